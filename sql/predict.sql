--
-- predict: nn_predict, nn_classify (overloads, NULL rules, versions, the
-- cache), nn_predict_batch, nn_evaluate, nn_confusion_matrix
--
SET nnpg.threads = 1;
SET search_path = public;

SELECT nn_create('clf', '[{"type": "dense", "units": 8, "activation": "relu"},
                          {"type": "dense", "units": 2, "activation": "softmax"}]', '{2}', 42);
SELECT count(*) FROM nn_fit('clf', 'SELECT x, y FROM blobs', epochs => 5, batch_size => 16,
                            learning_rate => 0.01, seed => 1, verbose => false);

-- one row: real[], double precision[] and bytea give the same as each other
SELECT array_length(nn_predict('clf', '{1.5, 1}'::real[]), 1) AS outputs,
       nn_classify('clf', '{1.5, 1}'::real[]) AS c1,
       nn_classify('clf', '{-1.5, -1}'::float8[]) AS c0,
       nn_predict('clf', '{1, 2}'::real[]) = nn_predict('clf', '{1, 2}'::float8[]) AS same_f8,
       nn_predict('clf', '\x0102'::bytea) = nn_predict('clf', '{1, 2}'::real[]) AS same_bytea,
       nn_classify('clf', '\x0000'::bytea) AS c_bytes;
SELECT abs((SELECT sum(p) FROM unnest(nn_predict('clf', '{0.3, -0.2}'::real[])) p) - 1) < 1e-5 AS sums_to_one;

-- per-row calls agree with the labels and with nn_predict_batch: the same
-- classes, and probabilities to float rounding (one row goes through sgemv,
-- a batch through sgemm, which add up in another order)
SELECT count(*) FILTER (WHERE nn_classify('clf', x) = y)::float / count(*) > 0.9 AS accurate
FROM blobs;
SELECT count(*) AS disagreements
FROM nn_predict_batch('clf', 'SELECT id, x FROM blobs') b
JOIN blobs USING (id)
WHERE b.class <> nn_classify('clf', blobs.x)
   OR cardinality(b.prediction) <> cardinality(nn_predict('clf', blobs.x))
   OR (SELECT max(abs(p - q)) FROM unnest(b.prediction, nn_predict('clf', blobs.x)) u(p, q)) > 1e-6;
SELECT count(*) AS rows, count(DISTINCT id) AS ids
FROM nn_predict_batch('clf', 'SELECT id::bigint, x FROM blobs');
SELECT id, class FROM nn_predict_batch('clf', 'SELECT id::smallint, x FROM blobs ORDER BY id LIMIT 3');
SELECT id, class FROM nn_predict_batch('clf', 'SELECT NULL::int, ARRAY[1.5, 1]::real[]');
SELECT * FROM nn_predict_batch('clf', 'SELECT id, x FROM blobs WHERE false');

-- NULL rules: NULL model or features give NULL; a NULL version is the latest
SELECT nn_predict(NULL, '{1, 2}'::real[]) IS NULL AS null_model,
       nn_predict('clf', NULL::real[]) IS NULL AS null_features,
       nn_classify(NULL, '{1, 2}'::real[]) IS NULL AS null_model_c,
       nn_classify('clf', NULL::bytea) IS NULL AS null_bytes_c,
       nn_predict('clf', '{1, 2}'::real[], NULL) = nn_predict('clf', '{1, 2}'::real[], 2) AS latest;
SELECT err($$SELECT * FROM nn_predict_batch(NULL, 'SELECT 1, ARRAY[1, 2]::real[]')$$);
SELECT err($$SELECT * FROM nn_predict_batch('clf', NULL)$$);
SELECT err($$SELECT * FROM nn_evaluate('clf', NULL)$$);

-- versions: version 1 is the untrained model
SELECT nn_predict('clf', '{1.5, 1}'::real[], 1) <> nn_predict('clf', '{1.5, 1}'::real[]) AS differs;
SELECT err($$SELECT nn_predict('clf', '{1, 2}'::real[], 7)$$);
SELECT err($$SELECT nn_predict('nope', '{1, 2}'::real[])$$);

-- bad features
SELECT err($$SELECT nn_predict('clf', '{1, 2, 3}'::real[])$$);
SELECT err($$SELECT nn_predict('clf', '\x01'::bytea)$$);
SELECT err($$SELECT nn_predict('clf', '{1, NULL}'::real[])$$);
SELECT err($$SELECT nn_predict('clf', '{1, NaN}'::real[])$$);
SELECT err($$SELECT nn_classify('clf', '{1, Infinity}'::float8[])$$);
SELECT err($$SELECT nn_predict('clf', '{1, 1e300}'::float8[])$$);
SELECT err($$SELECT * FROM nn_predict_batch('clf', 'SELECT x, x FROM blobs')$$);
SELECT err($$SELECT * FROM nn_predict_batch('clf', 'SELECT id FROM blobs')$$);
SELECT err($$SELECT * FROM nn_predict_batch('clf', 'SELECT id, x[1:1] FROM blobs')$$);
SELECT err($$SELECT * FROM nn_predict_batch('clf', 'SELECT id, CASE WHEN id = 3 THEN NULL ELSE x END FROM blobs ORDER BY id')$$);

-- a newer version is used by the next statement, also in one transaction
CREATE TEMP TABLE before AS SELECT nn_predict('clf', '{0.1, 0.1}'::real[]) AS p;
BEGIN;
SELECT count(*) FROM nn_fit('clf', 'SELECT x, y FROM blobs', epochs => 1, seed => 2, verbose => false);
SELECT nn_predict('clf', '{0.1, 0.1}'::real[]) <> p AS new_version_used,
       nn_predict('clf', '{0.1, 0.1}'::real[], 2) = p AS old_version_kept
FROM before;
ROLLBACK;
SELECT nn_predict('clf', '{0.1, 0.1}'::real[]) = p AS rolled_back FROM before;
SELECT max(version) FROM nn_models WHERE name = 'clf';

-- nn_evaluate: classification
SELECT metric, round(value::numeric, 2) AS value
FROM nn_evaluate('clf', 'SELECT x, y FROM blobs')
WHERE metric <> 'loss';
SELECT value < 0.3 AS low_loss FROM nn_evaluate('clf', 'SELECT x, y FROM blobs') WHERE metric = 'loss';
-- on one-hot targets too
SELECT metric, round(value::numeric, 2) AS value
FROM nn_evaluate('clf', 'SELECT x, CASE y WHEN 0 THEN ''{1,0}''::real[] ELSE ''{0,1}''::real[] END FROM blobs')
WHERE metric IN ('accuracy', 'n');
-- macro averages over the classes seen: all-one predictions on balanced data
SELECT nn_create('const', '[{"type": "dense", "units": 2, "activation": "softmax", "use_bias": false}]', '{1}', 1);
SELECT metric, round(value::numeric, 3) AS value
FROM nn_evaluate('const', 'SELECT 1::real, y FROM blobs') WHERE metric <> 'loss';
SELECT * FROM nn_confusion_matrix('const', 'SELECT 1::real, y FROM blobs');

-- nn_confusion_matrix
SELECT actual, predicted, count > 150 AS most
FROM nn_confusion_matrix('clf', 'SELECT x, y FROM blobs') WHERE actual = predicted;
SELECT sum(count) FROM nn_confusion_matrix('clf', 'SELECT x, y FROM blobs');
SELECT * FROM nn_confusion_matrix('loss_binary_crossentropy', 'SELECT x, y FROM blobs') ORDER BY 1, 2;

-- regression metrics
SELECT metric, value < 0.05 AS small FROM nn_evaluate('reg_net', 'SELECT a, b, y FROM reg')
WHERE metric IN ('loss', 'mse', 'mae');
SELECT metric, round(value::numeric, 2) AS value
FROM nn_evaluate('reg_net', 'SELECT a, b, y FROM reg') WHERE metric IN ('r2', 'n');
SELECT id, class IS NULL AS no_class FROM nn_predict_batch('reg_net', 'SELECT id, a, b FROM reg ORDER BY id LIMIT 2');
SELECT err($$SELECT * FROM nn_confusion_matrix('reg_net', 'SELECT a, b, y FROM reg')$$);
SELECT err($$SELECT * FROM nn_evaluate('reg_net', 'SELECT a, b, y FROM reg WHERE false')$$);
SELECT err($$SELECT * FROM nn_evaluate('clf', 'SELECT x, y + 5 FROM blobs')$$);

-- the per-backend cache holds 8 models: a statement that switches between
-- 12 on every row evicts and reloads, and still gets each model's answer
SELECT count(nn_create('many' || i, '[{"type": "dense", "units": 2}]', '{2}', i))
FROM generate_series(1, 12) i;
SELECT count(DISTINCT p::text) AS distinct_answers
FROM (SELECT nn_predict('many' || (i % 12 + 1), '{1, 2}'::real[]) p FROM generate_series(1, 240) i) s;
SELECT bool_and(nn_predict('many' || i, '{1, 2}'::real[]) = b.prediction) AS same_as_batch
FROM generate_series(1, 12) i,
     LATERAL nn_predict_batch('many' || i, 'SELECT 1, ''{1,2}''::real[]') b;
SELECT count(*) <= 8 AS bounded FROM pg_backend_memory_contexts WHERE name = 'nnpg cached model';
SELECT count(nn_drop('many' || i)) FROM generate_series(1, 12) i;
