#!/usr/bin/env bash
# Random SQL against nnpg: sqlsmith generates queries over a database of
# trained models, data tables and views that call every nnpg function with
# real arguments (and with a pool of bad ones, each call caught in its own
# subtransaction), then the part of the server log written meanwhile is
# searched for crashes, PANICs, failed assertions and resource-leak warnings.
#
# usage: bash test/fuzz/sqlsmith.sh   (with the PG* variables of a running
#        cluster, as for test/integration; PGUSER must be a superuser)
#   NNPG_FUZZ_QUERIES     queries to generate (2000)
#   NNPG_FUZZ_SEED        sqlsmith's random seed (1)
#   NNPG_FUZZ_SECONDS     wall-clock bound of the sqlsmith run (100)
#   NNPG_FUZZ_SERVER_LOG  the server's log file ($PGHOST/server.log, as
#                         scripts/cluster.sh lays it out)
#   NNPG_FUZZ_KEEP        a directory to copy sqlsmith's output, every query
#                         it sent, its error log and the server log part into
#
# sqlsmith runs each statement in a transaction that it rolls back, so the
# models are the same after the run; it sets statement_timeout to 1 s in
# its own session, the database's default (3 s) bounds the other sessions.
# Prints "ok -"/"not ok -" lines and exits non-zero when a check fails.
. "$(dirname "$0")/../integration/lib.sh"

QUERIES=${NNPG_FUZZ_QUERIES:-2000}
SEED=${NNPG_FUZZ_SEED:-1}
SECONDS_MAX=${NNPG_FUZZ_SECONDS:-100}
SERVER_LOG=${NNPG_FUZZ_SERVER_LOG:-$PGHOST/server.log}
KEEP=${NNPG_FUZZ_KEEP:-}
LOG_DB=${IT_DB}_log	# sqlsmith's --log-to database: one row per error

if ! command -v sqlsmith >/dev/null; then
	it_fail "sqlsmith is not installed (apt-get install sqlsmith)"
	it_finish
fi
if [ ! -r "$SERVER_LOG" ]; then
	it_fail "cannot read the server log $SERVER_LOG (set NNPG_FUZZ_SERVER_LOG)"
	it_finish
fi

it_setup_db
IT_CLEANUP+=("it_psql -d '$IT_ADMIN_DB' -c 'DROP DATABASE IF EXISTS $LOG_DB WITH (FORCE)'")
it_psql -d "$IT_ADMIN_DB" -c "DROP DATABASE IF EXISTS $LOG_DB WITH (FORCE)" \
	-c "CREATE DATABASE $LOG_DB" >/dev/null || { it_fail "CREATE DATABASE $LOG_DB"; it_finish; }
# The tables sqlsmith's logger writes to (its log.sql, the columns it uses).
it_psql -d "$LOG_DB" >/dev/null <<'EOF' || { it_fail "sqlsmith log tables"; it_finish; }
CREATE TABLE instance (id bigserial PRIMARY KEY, rev text, target text,
	hostname text, version text, seed text, t timestamptz DEFAULT now());
CREATE TABLE error (id bigint, msg text, query text, target text,
	sqlstate text, t timestamptz DEFAULT now());
CREATE TABLE stat (id bigint, generated bigint, level float8, nodes float8,
	updated timestamptz, retries float8, impedance jsonb);
EOF

# ---- data and models: one of each kind, trained for an epoch or two
it_psql >/dev/null <<'EOF' || { it_fail "creating the data and models"; it_finish; }
SELECT setseed(0.25);
CREATE TABLE fuzz_dense AS
SELECT i AS id, x, (x[1] + x[2] > x[3] + x[4])::int + (x[5] > 0.8)::int AS label
FROM (SELECT i, ARRAY(SELECT random()::real FROM generate_series(1, 8)
                      WHERE i IS NOT NULL) AS x  -- correlated: new per row
      FROM generate_series(1, 96) i) s;
CREATE TABLE fuzz_reg AS
SELECT id, x, (3 * x[1] - 2 * x[2] + x[3] * x[3])::real AS y FROM fuzz_dense;
CREATE TABLE fuzz_img AS                          -- 8x8 one-channel images
SELECT i AS id, img, (get_byte(img, 0) > 127)::int AS label
FROM (SELECT i, decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''
                                  ORDER BY p), 'hex') AS img
      FROM generate_series(1, 96) i, generate_series(1, 64) p GROUP BY i) s;
CREATE TABLE fuzz_seq AS                          -- 6 timesteps of 2 features
SELECT i AS id, s, (s[1] > s[11])::int AS label
FROM (SELECT i, ARRAY(SELECT random()::real FROM generate_series(1, 12)
                      WHERE i IS NOT NULL) AS s
      FROM generate_series(1, 96) i) q;
CREATE TABLE fuzz_tok AS                          -- 6 token ids in [0, 20)
SELECT i AS id, t, (t[1] < 10)::int AS label
FROM (SELECT i, ARRAY(SELECT (random() * 19)::int FROM generate_series(1, 6)
                      WHERE i IS NOT NULL) AS t
      FROM generate_series(1, 96) i) q;

SELECT nn_create('fz_dense', '[{"type": "dense", "units": 16, "activation": "relu"},
  {"type": "dropout", "rate": 0.1}, {"type": "dense", "units": 3, "activation": "softmax"}]',
  input_shape => '{8}', seed => 1);
SELECT nn_create('fz_reg', '[{"type": "normalize"},
  {"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 1}]',
  seed => 2);                                     -- built by its first fit
SELECT nn_create('fz_cnn', '[{"type": "rescale", "scale": 0.00392156862745098},
  {"type": "reshape", "shape": [8, 8, 1]},
  {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu", "padding": "same"},
  {"type": "batchnorm"}, {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"},
  {"type": "dense", "units": 2, "activation": "softmax"}]', input_shape => '{64}', seed => 3);
SELECT nn_create('fz_lstm', '[{"type": "reshape", "shape": [6, 2]},
  {"type": "lstm", "units": 8}, {"type": "dense", "units": 2, "activation": "softmax"}]',
  seed => 4);
SELECT nn_create('fz_emb', '[{"type": "embedding", "input_dim": 20, "output_dim": 4},
  {"type": "gru", "units": 4, "return_sequences": true}, {"type": "global_avgpool"},
  {"type": "dense", "units": 1, "activation": "sigmoid"}]', input_shape => '{6}', seed => 5);
-- Over 1 MB loaded: with nnpg.model_cache_mb = 1 (below) loading it evicts
-- the other models from a backend's cache, and loading one of them evicts it.
SELECT nn_create('fz_wide', '[{"type": "dense", "units": 512, "activation": "relu"},
  {"type": "dense", "units": 512, "activation": "relu"},
  {"type": "dense", "units": 3, "activation": "softmax"}]', input_shape => '{8}', seed => 7);
SELECT nn_create('fz_unbuilt', '[{"type": "dense", "units": 2, "activation": "softmax"}]',
  seed => 6);

SELECT count(*) FROM nn_fit('fz_dense', 'SELECT x, label FROM fuzz_dense', epochs => 2,
  batch_size => 16, seed => 1, validation_split => 0.25, verbose => false);
SELECT count(*) FROM nn_fit('fz_reg', 'SELECT x, y FROM fuzz_reg', epochs => 2,
  batch_size => 16, seed => 1, optimizer => 'sgd', learning_rate => 0.01, verbose => false);
SELECT count(*) FROM nn_fit('fz_cnn', 'SELECT img, label FROM fuzz_img', epochs => 2,
  batch_size => 16, seed => 1, verbose => false,
  validation_query => 'SELECT img, label FROM fuzz_img WHERE id <= 32');
SELECT count(*) FROM nn_fit('fz_lstm', 'SELECT s, label FROM fuzz_seq', epochs => 2,
  batch_size => 16, seed => 1, optimizer => 'rmsprop', verbose => false);
SELECT count(*) FROM nn_fit('fz_emb', 'SELECT t, label FROM fuzz_tok', epochs => 2,
  batch_size => 16, seed => 1, verbose => false);
SELECT count(*) FROM nn_fit('fz_wide', 'SELECT x, label FROM fuzz_dense', epochs => 1,
  batch_size => 32, seed => 1, optimizer => 'momentum', verbose => false);
EOF

# ---- fuzz_models: every version of every model, with a matching feature
# row, queries and bytes; "ok" marks the rows every function accepts.
it_psql >/dev/null <<'EOF' || { it_fail "creating fuzz_models"; it_finish; }
CREATE TABLE fuzz_models (
	name text, version int, features real[], f8 float8[], img bytea,
	q text,			-- features..., target: for nn_fit, nn_evaluate
	bq text,		-- key, features...: for nn_predict_batch
	spec jsonb, shape int[], blob bytea, opts jsonb,
	classifier bool, ok bool);
INSERT INTO fuzz_models (name, version, features, img, q, bq, shape, classifier)
SELECT m.name, v.version, m.features, m.img, m.q, m.bq, m.shape, m.classifier
FROM (VALUES
	('fz_dense', (SELECT x FROM fuzz_dense WHERE id = 1), NULL::bytea,
	 'SELECT x, label FROM fuzz_dense', 'SELECT id, x FROM fuzz_dense', '{8}'::int[], true),
	('fz_reg', (SELECT x FROM fuzz_reg WHERE id = 2), NULL,
	 'SELECT x, y FROM fuzz_reg', 'SELECT id, x FROM fuzz_reg', '{8}', false),
	('fz_cnn', NULL, (SELECT img FROM fuzz_img WHERE id = 3),
	 'SELECT img, label FROM fuzz_img', 'SELECT id, img FROM fuzz_img', '{64}', true),
	('fz_lstm', (SELECT s FROM fuzz_seq WHERE id = 4), NULL,
	 'SELECT s, label FROM fuzz_seq', 'SELECT id, s FROM fuzz_seq', '{12}', true),
	('fz_emb', (SELECT t::real[] FROM fuzz_tok WHERE id = 5), NULL,
	 'SELECT t, label FROM fuzz_tok', 'SELECT id, t FROM fuzz_tok', '{6}', true),
	('fz_wide', (SELECT x FROM fuzz_dense WHERE id = 6), NULL,
	 'SELECT x, label FROM fuzz_dense', 'SELECT id, x FROM fuzz_dense', '{8}', true)
) AS m(name, features, img, q, bq, shape, classifier),
(VALUES (1), (2), (NULL::int)) AS v(version);
INSERT INTO fuzz_models (name, version, features, q, classifier) VALUES
	('fz_unbuilt', 1, '{1,2}', 'SELECT x[1:2], label FROM fuzz_dense', true),
	('fz_missing', NULL, '{1,2,3}', 'SELECT 1, 2', false),
	('fz''quote', 1, '{1}', 'SELECT 1 FROM', false);
UPDATE fuzz_models SET f8 = features::float8[],
	ok = name IN ('fz_dense', 'fz_reg', 'fz_cnn', 'fz_lstm', 'fz_emb', 'fz_wide')
	     AND NOT (name = 'fz_reg' AND version = 1),
	opts = (ARRAY['{}', '{"clipnorm": 1.0, "clipvalue": 0.5}',
	              '{"lr_schedule": "plateau", "plateau_patience": 0}',
	              '{"on_null": "skip", "reset": true}',
	              '{"lr_schedule": "step", "decay_rate": 0.5, "decay_steps": 2}']::jsonb[])
	       [1 + (length(name) + coalesce(version, 0)) % 5];
UPDATE fuzz_models f SET spec = m.layers FROM nn_models m
	WHERE m.name = f.name AND m.version = 1;
UPDATE fuzz_models SET blob = nn_export(name, version) WHERE ok;

-- Views that call each function on the consistent rows: any query of
-- sqlsmith's that reads one calls it with real arguments.
CREATE VIEW fuzz_predictions AS
SELECT m.name, m.version,
	nn_predict(m.name, m.features, m.version) AS p_real,
	nn_predict(m.name, m.f8, m.version) AS p_float8,
	nn_predict(m.name, m.img, m.version) AS p_bytea,
	nn_classify(m.name, m.features, m.version) AS c_real,
	nn_classify(m.name, m.f8, m.version) AS c_float8,
	nn_classify(m.name, m.img, m.version) AS c_bytea
FROM fuzz_models m WHERE m.ok;
CREATE VIEW fuzz_batches AS
SELECT m.name, m.version, b.id, b.prediction, b.class
FROM fuzz_models m,
	LATERAL nn_predict_batch(m.name, m.bq || ' ORDER BY id LIMIT 8', m.version) b
WHERE m.ok;
CREATE VIEW fuzz_evaluations AS
SELECT m.name, m.version, e.metric, e.value
FROM fuzz_models m, LATERAL nn_evaluate(m.name, m.q, m.version) e WHERE m.ok;
CREATE VIEW fuzz_confusion AS
SELECT m.name, m.version, c.actual, c.predicted, c.count
FROM fuzz_models m, LATERAL nn_confusion_matrix(m.name, m.q, m.version) c
WHERE m.ok AND m.classifier;
CREATE VIEW fuzz_summaries AS
SELECT m.name, m.version, s.layer, s.type, s.output_shape, s.params
FROM fuzz_models m, LATERAL nn_summary(m.name, m.version) s WHERE m.ok;
CREATE VIEW fuzz_histories AS
SELECT m.name, h.version, h.epoch, h.loss, h.accuracy, h.val_loss, h.val_accuracy
FROM fuzz_models m, LATERAL nn_history(m.name, m.version) h WHERE m.ok;
CREATE VIEW fuzz_exports AS
SELECT m.name, m.version, nn_export(m.name, m.version) AS data
FROM fuzz_models m WHERE m.ok;
CREATE VIEW fuzz_fits AS
SELECT m.name, m.version, f.epoch, f.loss, f.accuracy, f.val_loss
FROM fuzz_models m,
	LATERAL nn_fit(m.name, m.q, epochs => 1, batch_size => 32, seed => 1,
	               options => m.opts, verbose => false, version => m.version) f
WHERE m.ok;
CREATE VIEW fuzz_imports AS
SELECT m.name, m.version, nn_import(m.name || '_imported', m.blob) AS imported
FROM fuzz_models m WHERE m.blob IS NOT NULL;
CREATE VIEW fuzz_drops AS
SELECT m.name, m.version, nn_drop(m.name, m.version) AS dropped
FROM fuzz_models m WHERE m.ok AND m.version IS NOT NULL;
CREATE VIEW fuzz_creates AS
SELECT m.name, nn_create(m.name || '_new', m.spec, m.shape, 7, true) AS created
FROM fuzz_models m WHERE m.ok AND m.version = 1;
CREATE VIEW fuzz_explanations AS
SELECT m.name, m.version, e.feature, e.value, e.attribution
FROM fuzz_models m,
	LATERAL nn_explain(m.name, m.features, NULL, NULL, 8, m.version) e
WHERE m.ok AND m.features IS NOT NULL;
CREATE VIEW fuzz_importances AS
SELECT m.name, m.version, i.feature, i.importance, i.stddev
FROM fuzz_models m,
	LATERAL nn_feature_importance(m.name, m.q || ' LIMIT 50', 1, 1, m.version) i
WHERE m.ok;
CREATE VIEW fuzz_plots AS
SELECT m.name, m.version, nn_plot(m.name, m.version) AS svg
FROM fuzz_models m WHERE m.ok AND m.version = 2;	-- trained
CREATE VIEW fuzz_prunes AS
SELECT m.name, m.version, nn_prune(m.name, 0.5, m.version) AS pruned
FROM fuzz_models m WHERE m.ok;
CREATE VIEW fuzz_quantizes AS
SELECT m.name, m.version, nn_quantize(m.name, NULL, m.version) AS quantized
FROM fuzz_models m WHERE m.ok AND m.version = 2;	-- built
CREATE VIEW fuzz_onnx AS
SELECT m.name, m.version, nn_export(m.name, m.version, 'onnx') AS data
FROM fuzz_models m WHERE m.ok AND m.version = 2;

-- Scalar wrappers of the set-returning functions, which sqlsmith never
-- calls itself, so that it can pass them arguments of its own.
CREATE FUNCTION fuzz_fit(model text, query text, epochs int, batch_size int,
	optimizer text, learning_rate float8, validation_split float8,
	options jsonb, version int) RETURNS float8 LANGUAGE sql AS $$
	SELECT min(f.loss) FROM nn_fit(model, query,
		CASE WHEN epochs > 2 THEN 2 ELSE epochs END,  -- short, but NULL stays NULL
		batch_size, optimizer, learning_rate,
		validation_split => validation_split, options => options,
		verbose => false, version => version) f $$;
CREATE FUNCTION fuzz_predict_batch(model text, query text, version int)
	RETURNS bigint LANGUAGE sql AS $$
	SELECT count(b.class) FROM nn_predict_batch(model, query, version) b $$;
CREATE FUNCTION fuzz_evaluate(model text, query text, version int)
	RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(e.metric || '=' || e.value, ' ')
	FROM nn_evaluate(model, query, version) e $$;
CREATE FUNCTION fuzz_confusion_matrix(model text, query text, version int)
	RETURNS bigint LANGUAGE sql AS $$
	SELECT sum(c.count) FROM nn_confusion_matrix(model, query, version) c $$;
CREATE FUNCTION fuzz_summary(model text, version int)
	RETURNS bigint LANGUAGE sql AS $$
	SELECT sum(s.params) FROM nn_summary(model, version) s $$;
CREATE FUNCTION fuzz_history(model text, version int)
	RETURNS bigint LANGUAGE sql AS $$
	SELECT count(h.epoch) FROM nn_history(model, version) h $$;
CREATE FUNCTION fuzz_explain(model text, features real[], target int,
	baseline real[], steps int, version int) RETURNS float8 LANGUAGE sql AS $$
	SELECT sum(e.attribution) FROM nn_explain(model, features, target, baseline,
		CASE WHEN steps > 16 THEN 16 ELSE steps END, version) e $$;
CREATE FUNCTION fuzz_feature_importance(model text, query text, repeats int,
	seed bigint, version int) RETURNS float8 LANGUAGE sql AS $$
	SELECT max(i.importance) FROM nn_feature_importance(model, query,
		CASE WHEN repeats > 2 THEN 2 ELSE repeats END, seed, version) i $$;
EOF

# ---- fuzz_inputs: calls of every function on every model, each with its
# good arguments or with exactly one of them replaced by a value from a
# pool of odd ones, so each bad value meets an otherwise valid call.
it_psql >/dev/null <<'EOF' || { it_fail "creating fuzz_inputs"; it_finish; }
-- The good arguments of each model (bytes for the models that read reals).
CREATE TEMP TABLE base AS
SELECT row_number() OVER (ORDER BY name) - 1 AS b, name, version,
	coalesce(features, (SELECT array_agg(get_byte(img, p)::real ORDER BY p)
	                    FROM generate_series(0, 63) p)) AS features,
	coalesce(img, decode(repeat('01', cardinality(features)), 'hex')) AS img,
	q, bq, blob, spec, shape
FROM fuzz_models WHERE ok AND version = 2;

-- The arguments each call takes; "query" is q, or bq for predict_batch.
CREATE TEMP TABLE fn_arg (fn text, arg text);
INSERT INTO fn_arg
SELECT fn, unnest(args) FROM (VALUES
	('predict', '{name,version,features}'::text[]),
	('predict_float8', '{name,version,features}'), ('classify', '{name,version,features}'),
	('classify_float8', '{name,version,features}'),
	('predict_bytea', '{name,version,img}'), ('classify_bytea', '{name,version,img}'),
	('predict_batch', '{name,version,query}'), ('evaluate', '{name,version,query}'),
	('confusion_matrix', '{name,version,query}'), ('fit', '{name,version,query,opts}'),
	('summary', '{name,version}'), ('history', '{name,version}'),
	('export', '{name,version}'), ('drop', '{name,version}'),
	('import', '{name,version,blob}'), ('create', '{name,spec,shape}'),
	('explain', '{name,version,features}'), ('explain_bytea', '{name,version,img}'),
	('feature_importance', '{name,version,query}'), ('plot', '{name,version}'),
	('prune', '{name,version}'), ('quantize', '{name,version,query}'),
	('export_onnx', '{name,version}')) AS f(fn, args);

-- The odd values: one typed column per argument; "model" pairs a value
-- with the model it was made for (NULL: any).
CREATE TEMP TABLE pool (arg text, model text, t text, i int, r real[], b bytea,
	j jsonb, s int[]);
INSERT INTO pool (arg, t) VALUES ('name', 'fz_dense'), ('name', 'fz_cnn'),
	('name', 'fz_unbuilt'), ('name', 'fz_missing'), ('name', ''), ('name', NULL),
	('name', 'fz''quote'), ('name', 'FZ_DENSE'), ('name', repeat('n', 300)),
	('name', 'fz_dense_imported');
INSERT INTO pool (arg, i) VALUES ('version', NULL), ('version', 1), ('version', 3),
	('version', 0), ('version', -1), ('version', 2147483647);
INSERT INTO pool (arg, model, r) VALUES
	('features', NULL, '{}'), ('features', NULL, NULL),
	('features', 'fz_dense', '{NaN,0,0,0,0,0,0,0}'),
	('features', 'fz_dense', '{Infinity,0,0,0,0,0,0,0}'),
	('features', 'fz_dense', '{1,NULL,0,0,0,0,0,0}'),
	('features', 'fz_dense', '{{1,2,3,4},{5,6,7,8}}'),
	('features', 'fz_dense', '[0:7]={1,2,3,4,5,6,7,8}'),
	('features', 'fz_dense', '{1,2,3,4,5,6,7}'),
	('features', 'fz_reg', '{1e30,-1e30,1e30,-1e30,1e30,-1e30,1e30,-1e30}'),
	('features', 'fz_reg', '{3.4e38,3.4e38,3.4e38,3.4e38,3.4e38,3.4e38,3.4e38,3.4e38}'),
	('features', 'fz_lstm', '{{{1,2},{3,4},{5,6}},{{1,2},{3,4},{5,6}}}'),
	('features', 'fz_emb', '{25,0,0,0,0,0}'), ('features', 'fz_emb', '{-1,0,0,0,0,0}'),
	('features', 'fz_emb', '{1.5,0,0,0,0,0}'), ('features', 'fz_emb', '{19,19,19,19,19,19}'),
	('features', 'fz_cnn', (SELECT array_agg(1e9::real) FROM generate_series(1, 64)));
INSERT INTO pool (arg, model, b) VALUES ('img', NULL, '\x'), ('img', NULL, NULL),
	('img', 'fz_cnn', (SELECT substr(img, 2) FROM fuzz_img WHERE id = 12)),
	('img', 'fz_cnn', (SELECT img || '\x00'::bytea FROM fuzz_img WHERE id = 13)),
	('img', 'fz_cnn', decode(repeat('ff', 64), 'hex')),
	('img', 'fz_emb', decode('ff0000000000', 'hex'));
INSERT INTO pool (arg, model, t) VALUES
	('query', NULL, ''), ('query', NULL, NULL), ('query', NULL, 'SELECT'),
	('query', NULL, 'SELECT 1; SELECT 2'), ('query', NULL, 'SELECT $1, 1'),
	('query', NULL, 'DELETE FROM fuzz_dense RETURNING x, label'),
	('query', NULL, 'SELECT x, label FROM fuzz_dense FOR UPDATE'),
	('query', NULL, 'SELECT x, label FROM fuzz_dense WHERE false'),
	('query', NULL, 'SELECT x FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, NULL::int FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, label::text FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT id, x, x FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, ARRAY[label, label, label]::real[] FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, label + 7 FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, -1 FROM fuzz_dense'),
	('query', 'fz_dense', 'VALUES (ARRAY[1,2,3,4,5,6,7,8]::real[], 1)'),
	('query', 'fz_dense', 'SELECT NULL::int, x FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT id::bigint * 1000000000000, x FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x::float8[], label::float8 FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], label FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x[1:4], x[5:8], label FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, label::bool FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, label::numeric / 0.5 FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT CASE WHEN id = 5 THEN x[1:7] ELSE x END, label FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, nn_classify(''fz_dense'', x) FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, nn_drop(''fz_dense'') % 3 FROM fuzz_dense'),
	('query', 'fz_dense', 'SELECT x, (SELECT count(*)::int FROM nn_fit(''fz_dense'', ''SELECT x, label FROM fuzz_dense'', epochs => 1, verbose => false)) % 3 FROM fuzz_dense LIMIT 4'),
	('query', 'fz_reg', 'SELECT x, 1e300::float8 FROM fuzz_reg'),
	('query', 'fz_reg', 'SELECT x, ''NaN''::real FROM fuzz_reg'),
	('query', 'fz_reg', 'SELECT x, ARRAY[y, y]::real[] FROM fuzz_reg'),
	('query', 'fz_emb', 'SELECT t::bigint[], label FROM fuzz_tok'),
	('query', 'fz_emb', 'SELECT t::smallint[], label::real / 2 FROM fuzz_tok'),
	('query', 'fz_emb', 'SELECT t, label FROM fuzz_tok UNION ALL SELECT ''{30,0,0,0,0,0}'', 1'),
	('query', 'fz_cnn', 'SELECT img, label FROM fuzz_img UNION ALL SELECT ''\x00''::bytea, 0'),
	('query', 'fz_cnn', 'SELECT img, ARRAY[1, 0]::real[] FROM fuzz_img'),
	('query', 'fz_lstm', 'SELECT s, label FROM fuzz_seq WHERE nn_import(''fz_nested'', nn_export(''fz_lstm'')) > 0');
INSERT INTO pool (arg, model, b) SELECT 'blob', NULL, blob FROM base;
INSERT INTO pool (arg, model, b) VALUES ('blob', NULL, '\x'), ('blob', NULL, NULL),
	('blob', NULL, '\xdeadbeef'),
	('blob', 'fz_dense', (SELECT substr(blob, 1, 40) FROM base WHERE name = 'fz_dense')),
	('blob', 'fz_cnn', (SELECT set_byte(blob, octet_length(blob) / 2,
	                                     255 - get_byte(blob, octet_length(blob) / 2))
	                    FROM base WHERE name = 'fz_cnn')),
	('blob', 'fz_lstm', (SELECT blob || '\x00'::bytea FROM base WHERE name = 'fz_lstm'));
INSERT INTO pool (arg, j) VALUES ('spec', '[]'), ('spec', '{}'), ('spec', 'null'),
	('spec', NULL), ('spec', '[{"type": "dense"}]'), ('spec', '[{"type": "nope"}]'),
	('spec', '[{"type": "dense", "units": 1e9}]'),
	('spec', '[{"type": "dense", "units": 2.5}]'),
	('spec', '[{"type": "conv2d", "filters": 1, "kernel_size": 99}]'),
	('spec', '[{"type": "reshape", "shape": [3, 3]}]'),
	('spec', '[{"type": "embedding", "input_dim": 5, "output_dim": 2},
	           {"type": "lstm", "units": 2, "return_sequences": true},
	           {"type": "flatten"}, {"type": "dense", "units": 1}]'),
	('spec', '[{"type": "dense", "units": 2, "trainable": false}]');
INSERT INTO pool (arg, model, j) VALUES ('spec', 'fz_cnn',
	'[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_flip"},
	  {"type": "random_crop", "height": 6, "width": 6}, {"type": "flatten"},
	  {"type": "dense", "units": 2, "activation": "softmax"}]');
INSERT INTO pool (arg, s) VALUES ('shape', NULL), ('shape', '{}'), ('shape', '{0}'),
	('shape', '{-3}'), ('shape', '{8,8,1}'), ('shape', '{2,2,2,2}'),
	('shape', '{4096,4096,3}'), ('shape', '{{1,2},{3,4}}');
INSERT INTO pool (arg, j) VALUES ('opts', '[]'), ('opts', 'null'), ('opts', NULL),
	('opts', '{"nope": 1}'), ('opts', '{"clipnorm": 1.0}'),
	('opts', '{"lr_schedule": "plateau", "plateau_patience": 0}'),
	('opts', '{"on_null": "skip", "reset": true}'),
	('opts', '{"class_weight": {"1": 2}}'),
	('opts', '{"class_weight": [1, 2, 3, 4, 5, 6, 7, 8, 9]}'),
	('opts', '{"lr_schedule": "exponential"}'), ('opts', '{"reset": "yes"}'),
	('opts', '{"teacher": "fz_dense"}'), ('opts', '{"epsilon": -1}'),
	('opts', '{"clipnorm": 1e400}');

CREATE TABLE fuzz_inputs AS
WITH calls AS (
	-- each call with good arguments on each model
	SELECT f.fn, 'none'::text AS arg, b.b, NULL::text AS t, NULL::int AS i,
		NULL::real[] AS r, NULL::bytea AS bytes, NULL::jsonb AS j, NULL::int[] AS s
	FROM (SELECT DISTINCT fn FROM fn_arg) f CROSS JOIN base b
	UNION ALL
	-- and with one argument replaced, on the model the value was made for
	-- or on the models in turn
	SELECT a.fn, a.arg, b.b, p.t, p.i, p.r, p.b, p.j, p.s
	FROM fn_arg a
	JOIN (SELECT *, row_number() OVER () AS n FROM pool) p ON p.arg = a.arg
	JOIN base b ON b.name = coalesce(p.model,
		(SELECT name FROM base
		 WHERE base.b = (p.n + length(a.fn)) % (SELECT count(*) FROM base))))
SELECT row_number() OVER (ORDER BY c.fn, c.arg, c.b) AS id, c.fn, c.arg AS replaced,
	CASE WHEN c.arg = 'name' THEN c.t
	     WHEN c.fn = 'import' THEN b.name || '_copy'
	     WHEN c.fn = 'create' THEN b.name || '_new'
	     ELSE b.name END AS name,
	CASE WHEN c.arg = 'version' THEN c.i
	     WHEN c.fn IN ('import', 'create') THEN NULL
	     ELSE b.version END AS version,
	CASE WHEN c.arg = 'features' THEN c.r ELSE b.features END AS features,
	CASE WHEN c.arg = 'img' THEN c.bytes ELSE b.img END AS img,
	CASE WHEN c.arg = 'query' THEN c.t
	     WHEN c.fn = 'predict_batch' THEN b.bq ELSE b.q END AS query,
	CASE WHEN c.arg = 'blob' THEN c.bytes ELSE b.blob END AS blob,
	CASE WHEN c.arg = 'spec' THEN c.j ELSE b.spec END AS spec,
	CASE WHEN c.arg = 'shape' THEN c.s ELSE b.shape END AS shape,
	CASE WHEN c.arg = 'opts' THEN c.j ELSE '{}' END AS opts
FROM calls c JOIN base b USING (b);
-- One nnpg call in a subtransaction that is always rolled back, so that
-- every call finds the models as they were: 'ok ' and the start of the
-- result, or the SQLSTATE of the error. Cancellation (statement_timeout)
-- is not caught: it ends the statement.
CREATE FUNCTION fuzz_try(fn text, name text, version int, features real[],
	img bytea, query text, blob bytea, spec jsonb, shape int[], opts jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	CASE fn
	WHEN 'predict' THEN r := nn_predict(name, features, version);
	WHEN 'predict_float8' THEN r := nn_predict(name, features::float8[], version);
	WHEN 'predict_bytea' THEN r := nn_predict(name, img, version);
	WHEN 'classify' THEN r := nn_classify(name, features, version);
	WHEN 'classify_float8' THEN r := nn_classify(name, features::float8[], version);
	WHEN 'classify_bytea' THEN r := nn_classify(name, img, version);
	WHEN 'predict_batch' THEN
		SELECT count(*) || ' ' || sum(b.class) INTO r
		FROM nn_predict_batch(name, query, version) b;
	WHEN 'evaluate' THEN
		SELECT string_agg(e.metric || '=' || e.value, ' ') INTO r
		FROM nn_evaluate(name, query, version) e;
	WHEN 'confusion_matrix' THEN
		SELECT sum(c.count) INTO r FROM nn_confusion_matrix(name, query, version) c;
	WHEN 'fit' THEN
		SELECT count(*) || ' ' || min(f.loss) INTO r
		FROM nn_fit(name, query, epochs => 1, batch_size => 16, seed => 3,
		            options => opts, verbose => false, version => version) f;
	WHEN 'summary' THEN
		SELECT sum(s.params) INTO r FROM nn_summary(name, version) s;
	WHEN 'history' THEN
		SELECT count(*) INTO r FROM nn_history(name, version) h;
	WHEN 'export' THEN r := md5(nn_export(name, version));
	WHEN 'import' THEN r := nn_import(name, blob, version);
	WHEN 'create' THEN r := nn_create(name, spec, shape, 1, true);
	WHEN 'drop' THEN r := nn_drop(name, version);
	WHEN 'explain' THEN
		SELECT sum(e.attribution) INTO r FROM nn_explain(name, features, NULL, NULL, 8, version) e;
	WHEN 'explain_bytea' THEN
		SELECT sum(e.attribution) INTO r FROM nn_explain(name, img, NULL, NULL, 8, version) e;
	WHEN 'feature_importance' THEN
		SELECT max(f.importance) INTO r
		FROM nn_feature_importance(name, query, 1, 1, version) f;
	WHEN 'plot' THEN r := md5(nn_plot(name, version));
	WHEN 'prune' THEN r := nn_prune(name, 0.5, version);
	WHEN 'quantize' THEN r := nn_quantize(name, query, version);
	WHEN 'export_onnx' THEN
		r := nn_import(name || '_onnx', nn_export(name, version, 'onnx'));
	END CASE;
	RAISE EXCEPTION USING ERRCODE = 'FZ000', MESSAGE = 'ok ' || coalesce(left(r, 40), 'null');
EXCEPTION WHEN OTHERS THEN
	IF SQLSTATE = 'FZ000' THEN
		RETURN SQLERRM;
	END IF;
	RETURN SQLSTATE;
END $$;

-- The calls, one view per group of functions (a whole group runs well
-- within a statement's time).
CREATE VIEW fuzz_attempts_predict AS
SELECT i.id, i.fn, i.replaced, i.name, i.version,
	fuzz_try(i.fn, i.name, i.version, i.features, i.img, i.query, i.blob,
	         i.spec, i.shape, i.opts) AS outcome
FROM fuzz_inputs i WHERE i.fn LIKE 'predict%' AND i.fn <> 'predict_batch'
	OR i.fn LIKE 'classify%';
CREATE VIEW fuzz_attempts_query AS
SELECT i.id, i.fn, i.replaced, i.name, i.version, i.query,
	fuzz_try(i.fn, i.name, i.version, i.features, i.img, i.query, i.blob,
	         i.spec, i.shape, i.opts) AS outcome
FROM fuzz_inputs i WHERE i.fn IN ('predict_batch', 'evaluate', 'confusion_matrix');
CREATE VIEW fuzz_attempts_fit AS
SELECT i.id, i.fn, i.replaced, i.name, i.version, i.query, i.opts,
	fuzz_try(i.fn, i.name, i.version, i.features, i.img, i.query, i.blob,
	         i.spec, i.shape, i.opts) AS outcome
FROM fuzz_inputs i WHERE i.fn = 'fit';
CREATE VIEW fuzz_attempts_manage AS
SELECT i.id, i.fn, i.replaced, i.name, i.version, i.spec, i.shape,
	fuzz_try(i.fn, i.name, i.version, i.features, i.img, i.query, i.blob,
	         i.spec, i.shape, i.opts) AS outcome
FROM fuzz_inputs i
WHERE i.fn IN ('summary', 'history', 'export', 'import', 'create', 'drop');
CREATE VIEW fuzz_attempts_explain AS
SELECT i.id, i.fn, i.replaced, i.name, i.version, i.query,
	fuzz_try(i.fn, i.name, i.version, i.features, i.img, i.query, i.blob,
	         i.spec, i.shape, i.opts) AS outcome
FROM fuzz_inputs i
WHERE i.fn IN ('explain', 'explain_bytea', 'feature_importance', 'plot', 'prune',
               'quantize', 'export_onnx');
EOF

models_sql="SELECT name || ' ' || version || ' ' || coalesce(md5(weights), '-')
	FROM nnpg.models ORDER BY name, version"
models_before=$(it_psql -c "$models_sql")
it_check_eq "set-up: versions of the seven models (2 each, 1 of the unbuilt one)" \
	"$(it_psql -c "SELECT count(*) FROM nnpg.models")" 13

# Every statement from here on must end in time; the stats of the function
# calls measure what sqlsmith reached; warnings are logged with their query;
# the model cache evicts often.
it_psql -d "$IT_ADMIN_DB" -c "ALTER DATABASE $IT_DB SET statement_timeout = '3s'" \
	-c "ALTER DATABASE $IT_DB SET nnpg.model_cache_mb = 1" \
	-c "ALTER DATABASE $IT_DB SET lock_timeout = '1s'" \
	-c "ALTER DATABASE $IT_DB SET track_functions = 'all'" \
	-c "ALTER DATABASE $IT_DB SET log_min_error_statement = 'warning'" >/dev/null ||
	{ it_fail "ALTER DATABASE $IT_DB SET ..."; it_finish; }

log_from=$(stat -c %s "$SERVER_LOG")

# The pool reaches each function's success and error paths, and no input
# makes one fail with an internal error (XX000: an elog, a "cannot happen").
attempts=$(it_psql -F ' ' -c "BEGIN" -c "SET LOCAL track_functions = 'none'" -c "
	SELECT fn, count(*) FILTER (WHERE outcome LIKE 'ok%'),
	       count(*) FILTER (WHERE outcome NOT LIKE 'ok%'),
	       count(*) FILTER (WHERE outcome = 'XX000')
	FROM (SELECT fn, fuzz_try(fn, name, version, features, img, query, blob,
	                          spec, shape, opts) AS outcome
	      FROM fuzz_inputs) a
	GROUP BY fn ORDER BY fn" -c "ROLLBACK")
printf '%s\n' "$attempts" | sed '/^$/d; s/^/# fuzz_inputs: function, ok, errors, internal errors: /'
bad=$(printf '%s\n' "$attempts" | awk 'NF == 4 && ($2 == 0 || $3 == 0) { print $1 }' | paste -sd ' ')
n_calls=$(it_psql -c "SELECT count(DISTINCT fn) FROM fuzz_inputs")
if [ "$(printf '%s\n' "$attempts" | awk 'NF == 4' | wc -l)" = "$n_calls" ] && [ -z "$bad" ]; then
	it_pass "fuzz_inputs: each of $n_calls calls succeeds on some inputs and fails on others"
else
	it_fail "fuzz_inputs: calls that never succeed or never fail: ${bad:-(missing)}"
fi
it_check_eq "fuzz_inputs: calls that fail with an internal error (XX000)" \
	"$(printf '%s\n' "$attempts" | awk 'NF == 4 { n += $4 } END { print n + 0 }')" 0

# ---- the run
it_psql -c "SELECT pg_stat_reset()" >/dev/null
target="host=$PGHOST port=${PGPORT:-5432} user=$PGUSER dbname=$IT_DB"
it_note "sqlsmith: $QUERIES queries, seed $SEED, at most ${SECONDS_MAX}s"
start=$(it_now)
timeout -s INT -k 15 "$SECONDS_MAX" sqlsmith --target="$target" \
	--log-to="host=$PGHOST port=${PGPORT:-5432} user=$PGUSER dbname=$LOG_DB" \
	--seed="$SEED" --max-queries="$QUERIES" --exclude-catalog --verbose \
	--dump-all-queries >"$IT_TMP/queries.sql" 2>"$IT_TMP/sqlsmith.out"
rc=$?
elapsed=$(it_since "$start")
# After a crash the server resets itself first: give it a moment.
for _ in $(seq 1 150); do
	it_psql -c "SELECT 1" >/dev/null 2>&1 && break
	sleep 0.2
done
# The run's backends report their function calls as they exit.
for _ in $(seq 1 50); do
	[ "$(it_psql -c "SELECT count(*) FROM pg_stat_activity
		WHERE application_name LIKE 'sqlsmith%'")" = 0 ] && break
	sleep 0.2
done

run=$(sed -n 's/^queries: \([0-9]*\).*/\1/p' "$IT_TMP/sqlsmith.out" | tail -n 1)
# sqlsmith's progress: one character per query (. ok, e error, t timeout,
# S syntax error, C connection lost), on lines of their own.
progress=$(grep -E '^[.etSC]+$' "$IT_TMP/sqlsmith.out" | tr -d '\n')
count_of() { printf '%s' "$progress" | tr -cd "$1" | wc -c; }
case "$rc" in
0) it_pass "sqlsmith ran ${run:-?} queries in ${elapsed}s" ;;
124) if [ "${run:-0}" -gt 0 ]; then
	it_pass "sqlsmith ran ${run} queries, stopped by the ${SECONDS_MAX}s bound"
else
	it_fail "sqlsmith ran no query in ${SECONDS_MAX}s"
fi ;;
*) it_fail "sqlsmith failed (exit $rc) after ${run:-no} queries"
	tail -n 20 "$IT_TMP/sqlsmith.out" | sed 's/^/    | /' ;;
esac
timeouts=$(it_psql -d "$LOG_DB" -c "SELECT count(*) FROM error WHERE sqlstate = '57014'")
it_note "queries: ${run:-?}; ok $(count_of .), errors $(($(count_of e) + $(count_of t)))" \
	"(statement timeouts ${timeouts:-?}), syntax errors $(count_of S)," \
	"connections lost $(count_of C)"

it_note "sqlsmith's $(grep '^error rate' "$IT_TMP/sqlsmith.out" | tail -n 1)"
# sqlsmith's error log, by SQLSTATE class.
it_psql -d "$LOG_DB" -c "
	WITH e AS (SELECT coalesce(sqlstate, '?????') AS s,
	                  regexp_replace(split_part(msg, E'\n', 1), '^ERROR: +', '') AS m FROM error),
	     c AS (SELECT left(s, 2) AS cls, count(*) AS n FROM e GROUP BY 1),
	     one AS (SELECT DISTINCT ON (left(s, 2)) left(s, 2) AS cls, s, m
	             FROM (SELECT s, m, count(*) AS n FROM e GROUP BY s, m) g
	             ORDER BY left(s, 2), n DESC, s, m)	-- its most frequent error
	SELECT c.cls || ' ' || c.n || ' (e.g. ' || one.s || ' ' || left(one.m, 60) || ')'
	FROM c JOIN one USING (cls) ORDER BY c.n DESC, c.cls" |
	sed 's/^/# errors by SQLSTATE class: /'
# the user's functions; the schema nnpg holds internals (data-parallel
# training's aggregate and its state type's functions)
calls=$(it_psql -F ' ' -c "SELECT funcname, sum(calls) FROM pg_stat_user_functions
	WHERE funcname LIKE 'nn\_%' AND schemaname <> 'nnpg'
	GROUP BY funcname ORDER BY funcname")
printf '%s\n' "$calls" | sed '/^$/d; s/^/# calls during the run: /'
n_fn=$(it_psql -c "SELECT count(DISTINCT p.proname) FROM pg_catalog.pg_proc p
	JOIN pg_catalog.pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
	JOIN pg_catalog.pg_extension e ON d.refobjid = e.oid AND e.extname = 'nnpg'
	WHERE p.proname LIKE 'nn\_%' AND p.pronamespace <> 'nnpg'::regnamespace")
it_check_eq "sqlsmith's queries called each of the $n_fn nnpg functions" \
	"$(printf '%s\n' "$calls" | awk '$2 > 0' | wc -l)" "$n_fn"

# ---- the server log written during the run
tail -c +$((log_from + 1)) "$SERVER_LOG" >"$IT_TMP/server.log"
# (a parallel worker that raises an ERROR exits with code 1: not a crash)
crash_re='PANIC:|TRAP:|failed Assert|terminated by signal|terminated by exception|exited with exit code ([02-9]|[1-9][0-9])|server process .* was terminated|terminating any other active server processes|all server processes terminated'
leak_re='WARNING: .*(leak|leaked|not closed|SPI stack|SPI_finish|alloc set|past chunk end)'
crashes=$(grep -Ec 'terminated by signal|terminated by exception|exited with exit code ([02-9]|[1-9][0-9])' "$IT_TMP/server.log")
it_note "server log during the run: $(wc -l <"$IT_TMP/server.log") lines, $crashes crashed backends"
if grep -Eq "$crash_re" "$IT_TMP/server.log"; then
	it_fail "the server log shows a crash, PANIC or failed assertion"
	grep -E -A 2 "$crash_re" "$IT_TMP/server.log" | head -n 60 | sed 's/^/    | /'
	# The query of each lost connection, by its place in the progress line.
	printf '%s' "$progress" | grep -ob C | cut -d: -f1 | head -n 5 | while read -r i; do
		echo "    query $((i + 1)), connection lost:"
		awk -v n=$((i + 1)) 'BEGIN { RS = ";\n" } NR == n { print; exit }' \
			"$IT_TMP/queries.sql" | head -n 80 | sed 's/^/    | /'
	done
else
	it_pass "no crash, PANIC or failed assertion in the server log"
fi
if grep -Eiq "$leak_re" "$IT_TMP/server.log"; then
	it_fail "the server log shows resource-leak warnings"
	grep -Ei -A 3 "$leak_re" "$IT_TMP/server.log" | head -n 60 | sed 's/^/    | /'
else
	it_pass "no resource-leak warning in the server log"
fi

it_expect_value 1 "the server still answers" -- "SELECT 1"
it_check_eq "the models are as before the run (sqlsmith rolls every statement back)" \
	"$(it_psql -c "$models_sql" | md5sum)" "$(printf '%s\n' "$models_before" | md5sum)"

if [ -n "$KEEP" ]; then
	mkdir -p "$KEEP" &&
		cp "$IT_TMP/sqlsmith.out" "$IT_TMP/queries.sql" "$IT_TMP/server.log" "$KEEP/" &&
		it_psql -d "$LOG_DB" -c "\\copy error TO '$KEEP/errors.csv' CSV HEADER" &&
		it_note "kept sqlsmith's output, queries, errors and the server log part in $KEEP"
elif [ "$IT_FAILED" != 0 ]; then
	it_note "set NNPG_FUZZ_KEEP=DIR to keep sqlsmith's output and every query it sent"
fi
it_finish
