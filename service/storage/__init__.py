"""Storage: the database (schema, migrations, SQLAlchemy engine), the portfolio store, the originals on disk, the
in-memory vector index and the gallery that composes them, API keys and the decision log. Nothing here knows HTTP
or the model beyond the vectors it is handed."""
