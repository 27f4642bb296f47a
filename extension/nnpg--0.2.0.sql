/* extension/nnpg--0.2.0.sql: install script of nnpg 0.2.0 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION nnpg" to load this file. \quit

/*
 * The table and its index go into the database's default tablespace,
 * whatever default_tablespace the installing session set: a trusted install
 * runs this script as the bootstrap superuser, which may create in
 * tablespaces the installing role may not.  SET LOCAL lasts until the end of
 * the transaction that runs CREATE EXTENSION.
 */
SET LOCAL default_tablespace = '';

/*
 * Nor does CREATE EXTENSION check that the installing role, the extension's
 * owner, may create in the target schema: check it here.
 */
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_extension e
			   WHERE e.extname OPERATOR(pg_catalog.=) 'nnpg'
				 AND NOT pg_catalog.has_schema_privilege(e.extowner, e.extnamespace,
														 'CREATE')) THEN
		RAISE EXCEPTION USING
			ERRCODE = 'insufficient_privilege',
			MESSAGE = 'permission denied to install nnpg into this schema',
			HINT = 'Install it into a schema where you have the CREATE privilege.';
	END IF;
END
$$;

/*
 * The schema nnpg holds the model table; the functions go into the schema
 * CREATE EXTENSION installs into.  Substitution tokens appear only where an
 * identifier goes: in a comment, a comment delimiter in the schema name
 * would end the comment.
 */
CREATE SCHEMA nnpg;
GRANT USAGE ON SCHEMA nnpg TO PUBLIC;

/*
 * One row per model version.  The owner is kept as a role name rather than
 * a regrole so that pg_dump/pg_upgrade carry it across clusters unchanged.
 * params is filled by the C functions from the model bytes so that the
 * nn_models view does not have to parse them.
 */
CREATE TABLE nnpg.models (
	name		text NOT NULL CHECK (name OPERATOR(pg_catalog.<>) ''),
	version		integer NOT NULL CHECK (version OPERATOR(pg_catalog.>) 0),
	owner		name NOT NULL DEFAULT CURRENT_USER,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	layers		jsonb NOT NULL,
	training	jsonb NOT NULL DEFAULT '{}',
	metrics		jsonb,
	history		jsonb,
	weights		bytea,
	params		bigint,
	format		text NOT NULL DEFAULT 'float32'
		CHECK (format OPERATOR(pg_catalog.=) ANY (ARRAY['float32', 'int8'])),
	sparsity	real CHECK (sparsity OPERATOR(pg_catalog.>=) 0 AND sparsity OPERATOR(pg_catalog.<=) 1),
	UNIQUE (name, version)
);

COMMENT ON TABLE nnpg.models IS 'nnpg models, one row per version';
COMMENT ON COLUMN nnpg.models.layers IS 'layer specification as given to nn_create';
COMMENT ON COLUMN nnpg.models.training IS 'training settings: optimizer, loss, epochs, batch size, seed, data query';
COMMENT ON COLUMN nnpg.models.metrics IS 'figures of the last training epoch';
COMMENT ON COLUMN nnpg.models.history IS 'one object per training epoch';
COMMENT ON COLUMN nnpg.models.weights IS 'serialized model (NULL until the input shape is known)';
COMMENT ON COLUMN nnpg.models.params IS 'number of trainable and adapted parameters';
COMMENT ON COLUMN nnpg.models.format IS 'number format of the weights: float32, or int8 after nn_quantize';
COMMENT ON COLUMN nnpg.models.sparsity IS 'fraction of zero weights in the dense, conv2d and recurrent kernels (nn_prune)';

/*
 * Model bytes are float32 weights (and optimizer state), which pglz almost
 * never shrinks by the quarter it needs: it would read every byte of every
 * version written only to keep them uncompressed.  Stored out of line as
 * they are.
 */
ALTER TABLE nnpg.models ALTER COLUMN weights SET STORAGE EXTERNAL;

-- back the models up with pg_dump
SELECT pg_catalog.pg_extension_config_dump('nnpg.models', '');

/*
 * Every role may create models; row-level security shows and lets change
 * only the rows a role owns.  Superusers bypass it; FORCE applies it to the
 * table owner too.
 */
ALTER TABLE nnpg.models ENABLE ROW LEVEL SECURITY;
ALTER TABLE nnpg.models FORCE ROW LEVEL SECURITY;

CREATE POLICY models_owner ON nnpg.models
	USING (owner OPERATOR(pg_catalog.=) CURRENT_USER)
	WITH CHECK (owner OPERATOR(pg_catalog.=) CURRENT_USER);

GRANT SELECT, INSERT, UPDATE, DELETE ON nnpg.models TO PUBLIC;

/* ---------- models ---------- */

CREATE FUNCTION @extschema@.nn_create(name text, layers jsonb,
									   input_shape integer[] DEFAULT NULL,
									   seed bigint DEFAULT NULL,
									   replace boolean DEFAULT false,
									   base text DEFAULT NULL,
									   base_layers integer DEFAULT NULL,
									   base_version integer DEFAULT NULL,
									   freeze_base boolean DEFAULT true)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_create'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_create(text, jsonb, integer[], bigint, boolean, text, integer, integer, boolean) IS
'create version 1 of a model from a JSON array of layers, optionally after the first layers of a base model; returns the version';

/* ---------- training ---------- */

CREATE FUNCTION @extschema@.nn_fit(model text, query text,
									epochs integer DEFAULT 10,
									batch_size integer DEFAULT 32,
									optimizer text DEFAULT 'adam',
									learning_rate double precision DEFAULT 0.001,
									loss text DEFAULT NULL,
									validation_query text DEFAULT NULL,
									validation_split double precision DEFAULT 0,
									shuffle boolean DEFAULT true,
									seed bigint DEFAULT NULL,
									early_stopping_patience integer DEFAULT NULL,
									options jsonb DEFAULT '{}',
									verbose boolean DEFAULT true,
									version integer DEFAULT NULL)
RETURNS TABLE(epoch integer, loss double precision,
			  accuracy double precision, val_loss double precision,
			  val_accuracy double precision, seconds double precision)
AS 'MODULE_PATHNAME', 'nnpg_fit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_fit(text, text, integer, integer, text, double precision, text, text, double precision, boolean, bigint, integer, jsonb, boolean, integer) IS
'train a model on the rows of a query (features..., target) and store the result as a new version';

/* ---------- using a model ---------- */

CREATE FUNCTION @extschema@.nn_predict(model text, features real[],
										version integer DEFAULT NULL)
RETURNS real[]
AS 'MODULE_PATHNAME', 'nnpg_predict'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_predict(text, real[], integer) IS
'output of a model for one row of features';

CREATE FUNCTION @extschema@.nn_predict(model text, features double precision[],
										version integer DEFAULT NULL)
RETURNS real[]
AS 'MODULE_PATHNAME', 'nnpg_predict_float8'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_predict(text, double precision[], integer) IS
'output of a model for one row of features';

CREATE FUNCTION @extschema@.nn_predict(model text, features bytea,
										version integer DEFAULT NULL)
RETURNS real[]
AS 'MODULE_PATHNAME', 'nnpg_predict_bytea'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_predict(text, bytea, integer) IS
'output of a model for one row of byte features (one unsigned byte per value)';

CREATE FUNCTION @extschema@.nn_classify(model text, features real[],
										 version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_classify'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_classify(text, real[], integer) IS
'most probable class of one row of features';

CREATE FUNCTION @extschema@.nn_classify(model text, features double precision[],
										 version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_classify_float8'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_classify(text, double precision[], integer) IS
'most probable class of one row of features';

CREATE FUNCTION @extschema@.nn_classify(model text, features bytea,
										 version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_classify_bytea'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_classify(text, bytea, integer) IS
'most probable class of one row of byte features (one unsigned byte per value)';

CREATE FUNCTION @extschema@.nn_predict_batch(model text, query text,
											  version integer DEFAULT NULL)
RETURNS TABLE(id bigint, prediction real[], class integer)
AS 'MODULE_PATHNAME', 'nnpg_predict_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_predict_batch(text, text, integer) IS
'outputs and classes of a model for the rows of a query (key, features...), computed in batches';

CREATE FUNCTION @extschema@.nn_evaluate(model text, query text,
										 version integer DEFAULT NULL)
RETURNS TABLE(metric text, value double precision)
AS 'MODULE_PATHNAME', 'nnpg_evaluate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_evaluate(text, text, integer) IS
'loss and metrics of a model on the rows of a query (features..., target)';

CREATE FUNCTION @extschema@.nn_confusion_matrix(model text, query text,
												 version integer DEFAULT NULL)
RETURNS TABLE(actual integer, predicted integer, count bigint)
AS 'MODULE_PATHNAME', 'nnpg_confusion_matrix'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_confusion_matrix(text, text, integer) IS
'counts of (actual, predicted) class pairs of a classifier on the rows of a query';

/* ---------- managing models ---------- */

CREATE FUNCTION @extschema@.nn_summary(model text, version integer DEFAULT NULL)
RETURNS TABLE(layer integer, type text, output_shape integer[], params bigint,
			  trainable boolean)
AS 'MODULE_PATHNAME', 'nnpg_summary'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_summary(text, integer) IS
'layers of a model with their output shapes, parameter counts and whether their weights train (NULL: no weights)';

CREATE FUNCTION @extschema@.nn_history(model text, version integer DEFAULT NULL)
RETURNS TABLE(version integer, epoch integer, loss double precision,
			  accuracy double precision, val_loss double precision,
			  val_accuracy double precision, seconds double precision)
AS 'MODULE_PATHNAME', 'nnpg_history'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_history(text, integer) IS
'training epochs of every version of a model (or of one version)';

CREATE FUNCTION @extschema@.nn_plot(model text, version integer DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'nnpg_plot'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_plot(text, integer) IS
'learning curves of a model version (and the versions it was trained from) as an SVG image';

CREATE FUNCTION @extschema@.nn_drop(model text, version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_drop'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_drop(text, integer) IS
'remove one version of a model, or all of them; returns how many were removed';

CREATE FUNCTION @extschema@.nn_export(model text, version integer DEFAULT NULL,
									   format text DEFAULT 'nnpg')
RETURNS bytea
AS 'MODULE_PATHNAME', 'nnpg_export'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_export(text, integer, text) IS
'a model version as nnpg model bytes (for nn_import), or as an ONNX model with format onnx';

CREATE FUNCTION @extschema@.nn_import(name text, data bytea,
									   version integer DEFAULT NULL,
									   format text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_import'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_import(text, bytea, integer, text) IS
'validate nnpg model bytes or an ONNX model (format NULL: detected) and store them as a new version (1 for a new name); returns the version';

/* ---------- the catalog view ---------- */

CREATE VIEW @extschema@.nn_models WITH (security_invoker = true) AS
	SELECT m.name, m.version, m.created_at, m.owner, m.params,
		   pg_catalog.octet_length(m.weights)::bigint AS size_bytes,
		   m.metrics, m.layers, m.training, m.format, m.sparsity
	FROM nnpg.models m;

COMMENT ON VIEW @extschema@.nn_models IS
'model versions the current role may see';

GRANT SELECT ON @extschema@.nn_models TO PUBLIC;

/* ---------- smaller models ---------- */

CREATE FUNCTION @extschema@.nn_prune(model text, sparsity double precision,
									  version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_prune'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_prune(text, double precision, integer) IS
'store the next version with the given fraction of smallest kernel weights zero (kept zero by later fits); returns it';

CREATE FUNCTION @extschema@.nn_quantize(model text,
										 calibration_query text DEFAULT NULL,
										 version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_quantize'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_quantize(text, text, integer) IS
'store the next version with int8 dense and conv2d kernels (and int8 activations with a calibration query); returns it';

CREATE FUNCTION nnpg.model_sparsity(weights bytea)
RETURNS real
AS 'MODULE_PATHNAME', 'nnpg_model_sparsity'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION nnpg.model_sparsity(bytea) IS
'fraction of zero weights in the prunable kernels of model bytes (the sparsity column of nnpg.models)';

/* ---------- explanation ---------- */

CREATE FUNCTION @extschema@.nn_explain(model text, features real[],
									   target integer DEFAULT NULL,
									   baseline real[] DEFAULT NULL,
									   steps integer DEFAULT 64,
									   version integer DEFAULT NULL)
RETURNS TABLE(feature integer, value real, attribution real)
AS 'MODULE_PATHNAME', 'nnpg_explain'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_explain(text, real[], integer, real[], integer, integer) IS
'integrated gradients: how much each feature of a row moves output target from the baseline';

CREATE FUNCTION @extschema@.nn_explain(model text, features double precision[],
									   target integer DEFAULT NULL,
									   baseline real[] DEFAULT NULL,
									   steps integer DEFAULT 64,
									   version integer DEFAULT NULL)
RETURNS TABLE(feature integer, value real, attribution real)
AS 'MODULE_PATHNAME', 'nnpg_explain_float8'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_explain(text, double precision[], integer, real[], integer, integer) IS
'integrated gradients: how much each feature of a row moves output target from the baseline';

CREATE FUNCTION @extschema@.nn_explain(model text, features bytea,
									   target integer DEFAULT NULL,
									   baseline real[] DEFAULT NULL,
									   steps integer DEFAULT 64,
									   version integer DEFAULT NULL)
RETURNS TABLE(feature integer, value real, attribution real)
AS 'MODULE_PATHNAME', 'nnpg_explain_bytea'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_explain(text, bytea, integer, real[], integer, integer) IS
'integrated gradients: how much each feature of a row moves output target from the baseline';

CREATE FUNCTION @extschema@.nn_feature_importance(model text, query text,
												   repeats integer DEFAULT 5,
												   seed bigint DEFAULT NULL,
												   version integer DEFAULT NULL)
RETURNS TABLE(feature text, importance double precision, stddev double precision)
AS 'MODULE_PATHNAME', 'nnpg_feature_importance'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_feature_importance(text, text, integer, bigint, integer) IS
'permutation importance of each feature column of a query: the mean rise of the loss when the column is shuffled';

/* ---------- progress ---------- */

CREATE FUNCTION nnpg.fit_progress(OUT pid integer, OUT usename name,
								  OUT model text, OUT phase text,
								  OUT epoch integer, OUT epochs integer,
								  OUT rows_done bigint, OUT rows_total bigint,
								  OUT loss double precision,
								  OUT rows_per_second double precision,
								  OUT elapsed double precision,
								  OUT eta double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'nnpg_fit_progress'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION nnpg.fit_progress() IS
'running nn_fit calls the current role may see (the rows of nn_progress)';

CREATE VIEW @extschema@.nn_progress WITH (security_invoker = true) AS
SELECT pid, usename, model, phase, epoch, epochs, rows_done, rows_total,
	   loss, rows_per_second, elapsed, eta
FROM nnpg.fit_progress();

COMMENT ON VIEW @extschema@.nn_progress IS
'live state of every running nn_fit the current role may see (needs nnpg in shared_preload_libraries)';

GRANT SELECT ON @extschema@.nn_progress TO PUBLIC;

/* ---------- data-parallel training: nn_fit's options workers and sync_rows ---------- */

/*
 * A replica of a model in training: the state of nnpg.nn_train.  A type of
 * its own, not internal, because Citus ships partial aggregate states
 * between nodes as text; the text is base64 of its counters and model
 * bytes.
 */
CREATE TYPE nnpg.nn_replica;

CREATE FUNCTION nnpg.nn_replica_in(cstring) RETURNS nnpg.nn_replica
AS 'MODULE_PATHNAME', 'nnpg_replica_in'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION nnpg.nn_replica_out(nnpg.nn_replica) RETURNS cstring
AS 'MODULE_PATHNAME', 'nnpg_replica_out'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION nnpg.nn_replica_recv(internal) RETURNS nnpg.nn_replica
AS 'MODULE_PATHNAME', 'nnpg_replica_recv'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION nnpg.nn_replica_send(nnpg.nn_replica) RETURNS bytea
AS 'MODULE_PATHNAME', 'nnpg_replica_send'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE nnpg.nn_replica (
	INPUT = nnpg.nn_replica_in,
	OUTPUT = nnpg.nn_replica_out,
	RECEIVE = nnpg.nn_replica_recv,
	SEND = nnpg.nn_replica_send,
	INTERNALLENGTH = VARIABLE,
	STORAGE = external
);

COMMENT ON TYPE nnpg.nn_replica IS
'a replica of a model in data-parallel training (nn_fit''s workers): counters and model bytes';

CREATE FUNCTION nnpg.nn_replica_step(state nnpg.nn_replica, model bytea,
									 teacher bytea, settings jsonb,
									 training_row record)
RETURNS nnpg.nn_replica
AS 'MODULE_PATHNAME', 'nnpg_replica_step'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE FUNCTION nnpg.nn_replica_merge(a nnpg.nn_replica, b nnpg.nn_replica)
RETURNS nnpg.nn_replica
AS 'MODULE_PATHNAME', 'nnpg_replica_merge'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE FUNCTION nnpg.nn_replica_final(state nnpg.nn_replica)
RETURNS nnpg.nn_replica
AS 'MODULE_PATHNAME', 'nnpg_replica_final'
LANGUAGE C VOLATILE PARALLEL SAFE;

/*
 * Does this backend still lack the model of round round_id?  nn_fit
 * passes the model to nn_train only then (each backend keeps it), since
 * Citus copies an aggregate's arguments for every row.
 */
CREATE FUNCTION nnpg.nn_replica_wants(round_id bigint) RETURNS boolean
AS 'MODULE_PATHNAME', 'nnpg_replica_wants'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

/*
 * nn_fit runs it once per round over its query:
 * SELECT nnpg.nn_train(CASE WHEN nnpg.nn_replica_wants($4) THEN $1 END,
 *                      CASE WHEN nnpg.nn_replica_wants($4) THEN $2 END,
 *                      $3, q) FROM (query) AS q
 * WHERE nnpg.nn_round_has($3, q)
 */
CREATE AGGREGATE nnpg.nn_train(model bytea, teacher bytea, settings jsonb,
							   training_row record) (
	SFUNC = nnpg.nn_replica_step,
	STYPE = nnpg.nn_replica,
	COMBINEFUNC = nnpg.nn_replica_merge,
	FINALFUNC = nnpg.nn_replica_final,
	FINALFUNC_MODIFY = READ_WRITE,
	PARALLEL = SAFE
);

/* Does round settings take the row (its hash, the round, validation)? */
CREATE FUNCTION nnpg.nn_round_has(settings jsonb, training_row record)
RETURNS boolean
AS 'MODULE_PATHNAME', 'nnpg_round_has'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION nnpg.nn_replica_model(replica nnpg.nn_replica) RETURNS bytea
AS 'MODULE_PATHNAME', 'nnpg_replica_model'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION nnpg.nn_replica_model(nnpg.nn_replica) IS
'the model bytes of a replica, with its optimizer state, as nn_import takes them';

COMMENT ON AGGREGATE nnpg.nn_train(bytea, bytea, jsonb, record) IS
'one round of data-parallel nn_fit: trains a replica of the model on the rows, merges replicas by rows trained';
