"""The training↔serving contract: what both halves must do identically, importable by either.

- `contract.card`: the model card (`model.json`) schema, reading and writing it;
- `contract.decode`: bytes or a file → a checked 8-bit RGB image (orientation, alpha, bit depth, colour mode);
- `contract.recipe`: RGB image → the backbone's input, exactly as the card says;
- `contract.aggregation`: pair scores against a portfolio → one score;
- `contract.calibration`: scored pairs → a calibration table and the counts behind it;
- `contract.operating`: a table + a strictness → the operating point, with the rates' confidence bounds.

numpy, scipy, Pillow and pydantic only: never FastAPI, SQLAlchemy, TensorFlow or onnxruntime.
Covered by tests/contract/.
"""
