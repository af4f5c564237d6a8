-- The schema brushprint created with Base.metadata.create_all before it had migrations (postgresql),
-- emitted at commit b31ad6f: the database a deployment of that release holds.

CREATE TABLE api_keys (
	id SERIAL NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	prefix VARCHAR(16) NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	scope VARCHAR(16) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	revoked_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ix_api_keys_key_hash ON api_keys (key_hash);

CREATE INDEX ix_api_keys_name ON api_keys (name);

CREATE TABLE artists (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(256) NOT NULL, 
	meta JSON NOT NULL, 
	created TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE audit (
	id SERIAL NOT NULL, 
	time TIMESTAMP WITH TIME ZONE NOT NULL, 
	key_name VARCHAR(64) NOT NULL, 
	route VARCHAR(64) NOT NULL, 
	artist_id VARCHAR(128), 
	image_sha256 VARCHAR(64) NOT NULL, 
	image_b_sha256 VARCHAR(64), 
	score FLOAT, 
	threshold FLOAT, 
	decision VARCHAR(32) NOT NULL, 
	model_id VARCHAR(128) NOT NULL, 
	request_id VARCHAR(64), 
	PRIMARY KEY (id)
);

CREATE INDEX ix_audit_key_name ON audit (key_name);

CREATE INDEX ix_audit_route ON audit (route);

CREATE INDEX ix_audit_time ON audit (time);

CREATE TABLE gallery_state (
	id INTEGER NOT NULL, 
	version BIGINT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE replicas (
	id VARCHAR(64) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	pid INTEGER NOT NULL, 
	model_id VARCHAR(128) NOT NULL, 
	staged_ready VARCHAR(128), 
	error VARCHAR(1024), 
	seen TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE serving_model (
	id INTEGER NOT NULL, 
	model_id VARCHAR(128) NOT NULL, 
	model_dir VARCHAR(1024) NOT NULL, 
	staged_model_id VARCHAR(128), 
	staged_model_dir VARCHAR(1024), 
	switched_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE works (
	id VARCHAR(36) NOT NULL, 
	artist_id VARCHAR(64) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	filename VARCHAR(255) NOT NULL, 
	path VARCHAR(512) NOT NULL, 
	size_bytes INTEGER NOT NULL, 
	created TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_works_artist_sha256 UNIQUE (artist_id, sha256), 
	FOREIGN KEY(artist_id) REFERENCES artists (id) ON DELETE CASCADE
);

CREATE INDEX ix_works_artist_id ON works (artist_id);

CREATE INDEX ix_works_sha256 ON works (sha256);

CREATE TABLE embeddings (
	work_id VARCHAR(36) NOT NULL, 
	model_id VARCHAR(128) NOT NULL, 
	dim INTEGER NOT NULL, 
	vector BYTEA NOT NULL, 
	created TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (work_id, model_id), 
	FOREIGN KEY(work_id) REFERENCES works (id) ON DELETE CASCADE
);

CREATE INDEX ix_embeddings_model_id ON embeddings (model_id);
