--
-- explain: nn_explain, integrated gradients; the attributions of a row add
-- up to output(row) - output(baseline) for every kind of model
--
SET nnpg.threads = 1;
SET search_path = public;

-- the class depends on features 1 and 2, not 3
CREATE TABLE ex_data AS
SELECT i AS id, ARRAY[rnd(i, 1), rnd(i, 2), rnd(i, 3)]::real[] AS x,
       (rnd(i, 1) + 2 * rnd(i, 2) > 1.5)::int AS y
FROM generate_series(1, 600) i;
SELECT nn_create('ex_mlp', '[{"type": "dense", "units": 8, "activation": "tanh"},
                             {"type": "dense", "units": 2, "activation": "softmax"}]',
                 '{3}', 1);
SELECT count(*) FROM nn_fit('ex_mlp', 'SELECT x, y FROM ex_data', epochs => 30,
                            learning_rate => 0.01, seed => 1, verbose => false);

-- one row per feature, 1-based, with its value; feature 3 matters least
SELECT feature, value, abs(attribution) < 0.1 AS small
FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::real[]) ORDER BY feature;

-- completeness: within 2% at the default 64 steps, for the predicted
-- class, from zeros and from another baseline; the other class too
CREATE FUNCTION ex_gap(model text, x real[], b real[], t int, steps int DEFAULT 64)
RETURNS float8 LANGUAGE sql AS $$
  SELECT abs(sum(attribution) - d) / abs(d)
  FROM nn_explain(model, x, t, b, steps),
       LATERAL (SELECT (nn_predict(model, x))[t + 1] -
                       (nn_predict(model, coalesce(b, array_fill(0::real, ARRAY[cardinality(x)]))))[t + 1]
                       AS d) p
  GROUP BY d $$;
SELECT ex_gap('ex_mlp', '{0.9, 0.8, 0.5}', NULL, nn_classify('ex_mlp', '{0.9, 0.8, 0.5}'::real[])) < 0.02 AS complete,
       ex_gap('ex_mlp', '{0.9, 0.8, 0.5}', '{0.1, 0.2, 0.3}', 1) < 0.02 AS from_baseline,
       ex_gap('ex_mlp', '{0.9, 0.8, 0.5}', NULL, 0) < 0.02 AS other_class,
       ex_gap('ex_mlp', '{0.9, 0.8, 0.5}', NULL, 1, 2) >=
       ex_gap('ex_mlp', '{0.9, 0.8, 0.5}', NULL, 1, 256) AS more_steps_closer;
-- the double precision and bytea overloads explain the same row
SELECT (SELECT array_agg(attribution ORDER BY feature)
        FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::float8[])) =
       (SELECT array_agg(attribution ORDER BY feature)
        FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::real[])) AS same;

-- images through convolution, pooling, batchnorm, dropout and augmentation
-- layers (all as they predict); tokens through an embedding (a token's
-- attribution sums its vector's)
CREATE TABLE ex_img AS
SELECT i AS id, i % 2 AS label,
       (SELECT array_agg(CASE WHEN (i % 2 = 0 AND r = 1 + i % 6) OR (i % 2 = 1 AND c = 1 + i % 6)
                              THEN 1.0 ELSE 0.2 * rnd(i, r * 8 + c) END ORDER BY r, c)
        FROM generate_series(0, 7) r, generate_series(0, 7) c)::real[] AS x
FROM generate_series(1, 200) i;
SELECT nn_create('ex_cnn', '[{"type": "reshape", "shape": [8, 8, 1]},
  {"type": "random_flip"}, {"type": "random_translation", "height_factor": 0.1, "width_factor": 0.1},
  {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
  {"type": "batchnorm"}, {"type": "maxpool2d", "pool_size": 2}, {"type": "dropout", "rate": 0.3},
  {"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}]', '{64}', 3);
SELECT count(*) FROM nn_fit('ex_cnn', 'SELECT x, label FROM ex_img', epochs => 5, seed => 2,
                            verbose => false);
SELECT count(*) AS features, bool_and(value = x[feature]) AS values_match
FROM ex_img, nn_explain('ex_cnn', x) WHERE id = 7;
SELECT ex_gap('ex_cnn', x, NULL, nn_classify('ex_cnn', x)) < 0.02 AS complete
FROM ex_img WHERE id IN (7, 8) ORDER BY id;

CREATE TABLE ex_tok AS
SELECT i AS id, ARRAY[i % 5, (i * 3) % 5, (i * 7) % 5, 1]::int[] AS t, (i % 5 > 2)::int AS y
FROM generate_series(1, 300) i;
SELECT nn_create('ex_emb', '[{"type": "embedding", "input_dim": 5, "output_dim": 3},
  {"type": "lstm", "units": 4}, {"type": "dense", "units": 2, "activation": "softmax"}]', '{4}', 4);
SELECT count(*) FROM nn_fit('ex_emb', 'SELECT t, y FROM ex_tok', epochs => 5, seed => 3,
                            verbose => false);
SELECT count(*) AS tokens FROM nn_explain('ex_emb', '{3, 1, 4, 1}'::real[], 1);
-- from the embeddings of a baseline of token ids, complete too
SELECT ex_gap('ex_emb', '{3, 1, 4, 1}', '{0, 0, 0, 0}', 1) < 0.02 AS complete;

-- bad input
SELECT * FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::real[], steps => 1);
SELECT * FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::real[], steps => 100000000);
SELECT * FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::real[], baseline => '{1, 2}');
SELECT * FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::real[], baseline => '{1, NaN, 2}');
SELECT * FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::real[], target => 2);
SELECT * FROM nn_explain('ex_mlp', '{0.9, 0.8}'::real[]);
SELECT * FROM nn_explain('ex_mlp', NULL::real[]);
SELECT * FROM nn_explain('ex_mlp', '{0.9, 0.8, 0.5}'::real[], steps => NULL);
SELECT * FROM nn_explain('ex_nosuch', '{0.9, 0.8, 0.5}'::real[]);
SELECT * FROM nn_explain('ex_emb', '{3, 1, 9, 1}'::real[]);

SELECT nn_drop('ex_mlp'), nn_drop('ex_cnn'), nn_drop('ex_emb');
DROP FUNCTION ex_gap;
DROP TABLE ex_data, ex_img, ex_tok;
