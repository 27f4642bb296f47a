/* extension/nnpg--0.1.0--0.2.0.sql: upgrade of nnpg 0.1.0 to 0.2.0 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION nnpg UPDATE TO '0.2.0'" to load this file. \quit

/*
 * 0.2.0 keeps every object of 0.1.0 and the model bytes it stored, which
 * the 0.2.0 library reads, predicts with and trains further unchanged.
 * Objects that 0.2.0 adds are created here as nnpg--0.2.0.sql creates
 * them; test/integration/upgrade.sh checks that both give the same schema.
 */

/* nn_create takes a base model (transfer), nn_summary shows frozen layers:
 * new signatures, so the 0.1.0 functions make way. */
DROP FUNCTION @extschema@.nn_create(text, jsonb, integer[], bigint, boolean);

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

DROP FUNCTION @extschema@.nn_summary(text, integer);

CREATE FUNCTION @extschema@.nn_summary(model text, version integer DEFAULT NULL)
RETURNS TABLE(layer integer, type text, output_shape integer[], params bigint,
			  trainable boolean)
AS 'MODULE_PATHNAME', 'nnpg_summary'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_summary(text, integer) IS
'layers of a model with their output shapes, parameter counts and whether their weights train (NULL: no weights)';

/* nn_plot: learning curves as SVG */
CREATE FUNCTION @extschema@.nn_plot(model text, version integer DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'nnpg_plot'
LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.nn_plot(text, integer) IS
'learning curves of a model version (and the versions it was trained from) as an SVG image';

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

/* nn_feature_importance: permutation importance */
CREATE FUNCTION @extschema@.nn_feature_importance(model text, query text,
												   repeats integer DEFAULT 5,
												   seed bigint DEFAULT NULL,
												   version integer DEFAULT NULL)
RETURNS TABLE(feature text, importance double precision, stddev double precision)
AS 'MODULE_PATHNAME', 'nnpg_feature_importance'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_feature_importance(text, text, integer, bigint, integer) IS
'permutation importance of each feature column of a query: the mean rise of the loss when the column is shuffled';

/* nn_prune, and the format and sparsity of every version in nn_models */
ALTER TABLE nnpg.models
	ADD COLUMN format text NOT NULL DEFAULT 'float32'
		CHECK (format OPERATOR(pg_catalog.=) ANY (ARRAY['float32', 'int8'])),
	ADD COLUMN sparsity real CHECK (sparsity OPERATOR(pg_catalog.>=) 0 AND sparsity OPERATOR(pg_catalog.<=) 1);
COMMENT ON COLUMN nnpg.models.format IS 'number format of the weights: float32, or int8 after nn_quantize';
COMMENT ON COLUMN nnpg.models.sparsity IS 'fraction of zero weights in the dense, conv2d and recurrent kernels (nn_prune)';

CREATE FUNCTION @extschema@.nn_prune(model text, sparsity double precision,
									  version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_prune'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_prune(text, double precision, integer) IS
'store the next version with the given fraction of smallest kernel weights zero (kept zero by later fits); returns it';

CREATE FUNCTION nnpg.model_sparsity(weights bytea)
RETURNS real
AS 'MODULE_PATHNAME', 'nnpg_model_sparsity'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION nnpg.model_sparsity(bytea) IS
'fraction of zero weights in the prunable kernels of model bytes (the sparsity column of nnpg.models)';

/* the sparsity of the versions stored by 0.1.0 (NULL where bytes are damaged) */
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT ctid FROM nnpg.models WHERE weights IS NOT NULL LOOP
		BEGIN
			UPDATE nnpg.models SET sparsity = nnpg.model_sparsity(weights)
			WHERE ctid OPERATOR(pg_catalog.=) r.ctid;
		EXCEPTION WHEN data_corrupted THEN
			NULL;
		END;
	END LOOP;
END
$$;

CREATE OR REPLACE VIEW @extschema@.nn_models WITH (security_invoker = true) AS
	SELECT m.name, m.version, m.created_at, m.owner, m.params,
		   pg_catalog.octet_length(m.weights)::bigint AS size_bytes,
		   m.metrics, m.layers, m.training, m.format, m.sparsity
	FROM nnpg.models m;

/* nn_explain: integrated gradients */
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

/* nn_quantize: int8 models */
CREATE FUNCTION @extschema@.nn_quantize(model text,
										 calibration_query text DEFAULT NULL,
										 version integer DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'nnpg_quantize'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.nn_quantize(text, text, integer) IS
'store the next version with int8 dense and conv2d kernels (and int8 activations with a calibration query); returns it';

/* ONNX in and out: nn_export and nn_import take a format */
DROP FUNCTION @extschema@.nn_export(text, integer);
DROP FUNCTION @extschema@.nn_import(text, bytea, integer);

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
