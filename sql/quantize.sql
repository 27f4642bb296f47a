--
-- quantize: nn_quantize stores an int8 version that predicts like the
-- float one, everywhere a model is used, in a quarter of the bytes
--
SET nnpg.threads = 1;
SET search_path = public;

-- four classes of 96 features
CREATE TABLE qz_data AS
SELECT i AS id, i % 4 AS label,
       (SELECT array_agg(CASE WHEN f / 24 = i % 4 THEN 1.0 ELSE 0.0 END + 0.5 * (rnd(i, f) - 0.5)
                         ORDER BY f) FROM generate_series(0, 95) f)::real[] AS x
FROM generate_series(1, 800) i;
SELECT nn_create('qz_net', '[{"type": "dense", "units": 64, "activation": "relu"},
                             {"type": "dense", "units": 4, "activation": "softmax"}]',
                 '{96}', 5);
SELECT count(*) FROM nn_fit('qz_net', 'SELECT x, label FROM qz_data', epochs => 10,
                            learning_rate => 0.01, seed => 1, verbose => false);

-- version 3: calibrated (int8 activations too); version 4: weight-only
SELECT nn_quantize('qz_net', 'SELECT x FROM qz_data LIMIT 200', 2);
SELECT nn_quantize('qz_net', NULL, 2);
SELECT version, format, training ->> 'quantized' AS quantized,
       training -> 'calibration_rows' AS calibration_rows, training -> 'from_version' AS from_version
FROM nn_models WHERE name = 'qz_net' ORDER BY version;
-- bytes: about a quarter of the float weights alone (version 1)
SELECT version, (SELECT size_bytes FROM nn_models WHERE name = 'qz_net' AND version = v.version)::float8 /
                (SELECT size_bytes FROM nn_models WHERE name = 'qz_net' AND version = 1) < 0.3 AS compact
FROM (VALUES (3), (4)) v(version);

-- the same classes as the float version on (nearly) every row, and the
-- same accuracy within half a point
SELECT v.version, count(*) FILTER (WHERE nn_classify('qz_net', x, v.version) =
                                         nn_classify('qz_net', x, 2)) >= 0.99 * count(*) AS same_classes
FROM qz_data, (VALUES (3), (4)) v(version) GROUP BY v.version ORDER BY 1;
SELECT v.version, abs((SELECT value FROM nn_evaluate('qz_net', 'SELECT x, label FROM qz_data', v.version)
                       WHERE metric = 'accuracy') -
                      (SELECT value FROM nn_evaluate('qz_net', 'SELECT x, label FROM qz_data', 2)
                       WHERE metric = 'accuracy')) <= 0.005 AS within_half_a_point
FROM (VALUES (3), (4)) v(version) ORDER BY 1;
-- everywhere a model is used: batches (the same classes as per row),
-- confusion matrix, summary, feature importance, export and import
SELECT count(*) FILTER (WHERE b.class = nn_classify('qz_net', d.x, 3)) = count(*) AS batch_as_rows
FROM nn_predict_batch('qz_net', 'SELECT id, x FROM qz_data', 3) b JOIN qz_data d ON d.id = b.id;
SELECT sum(count) AS rows FROM nn_confusion_matrix('qz_net', 'SELECT x, label FROM qz_data', 3);
SELECT layer, type, params, trainable FROM nn_summary('qz_net', 3);
SELECT count(*) AS columns FROM nn_feature_importance('qz_net', 'SELECT x, label FROM qz_data', 1, 1, 3);
SELECT nn_import('qz_copy', nn_export('qz_net', 3));
SELECT format FROM nn_models WHERE name = 'qz_copy';
SELECT count(*) FILTER (WHERE nn_predict('qz_copy', x) = nn_predict('qz_net', x, 3)) AS same
FROM qz_data WHERE id <= 20;

-- explained through its dequantized kernels: the attributions add up to
-- the change of the weight-only version's output, and are close to the
-- float version's
SELECT abs(sum(e.attribution) - ((nn_predict('qz_net', d.x, 4))[d.label + 1] -
                                  (nn_predict('qz_net', array_fill(0::real, ARRAY[96]), 4))[d.label + 1]))
       < 0.02 AS complete
FROM qz_data d, nn_explain('qz_net', d.x, d.label, version => 4) e WHERE d.id = 1
GROUP BY d.x, d.label;
SELECT max(abs(q.attribution - f.attribution)) < 0.05 AS close_to_float
FROM nn_explain('qz_net', (SELECT x FROM qz_data WHERE id = 1), version => 3) q
JOIN nn_explain('qz_net', (SELECT x FROM qz_data WHERE id = 1), version => 2) f USING (feature);

-- what an int8 version refuses: training, pruning, quantizing again
SELECT * FROM nn_fit('qz_net', 'SELECT x, label FROM qz_data', version => 3);
SELECT * FROM nn_fit('qz_net', 'SELECT x, label FROM qz_data', options => '{"reset": true}', version => 3);
SELECT nn_prune('qz_net', 0.5, 3);
SELECT nn_quantize('qz_net', NULL, 3);
-- bad calibration queries
SELECT nn_quantize('qz_net', 'SELECT x FROM qz_data WHERE false', 2);
SELECT nn_quantize('qz_net', 'SELECT x[1:10] FROM qz_data', 2);
SELECT nn_quantize('qz_net', 'SELECT NULL::real[] FROM qz_data', 2);
SELECT nn_quantize('qz_net', 'SELECT array_fill(''NaN''::real, ARRAY[96])', 2);
SELECT nn_quantize('qz_net', 'SELECT', 2);
SELECT nn_quantize(NULL);
SELECT nn_quantize('qz_nosuch');
SELECT count(*) FROM nnpg.models WHERE name = 'qz_net';

SELECT nn_drop('qz_net'), nn_drop('qz_copy');
DROP TABLE qz_data;
