--
-- importance: nn_feature_importance, permutation importance per feature
-- column of a query, repeatable with seed
--
SET nnpg.threads = 1;
SET search_path = public;

-- four columns; the target depends on a and c only (c twice as much)
CREATE TABLE imp_data AS
SELECT i AS id, rnd(i, 1)::real AS a, rnd(i, 2)::real AS b, rnd(i, 3)::real AS c,
       ARRAY[rnd(i, 4), rnd(i, 5)]::real[] AS d,
       (2 * rnd(i, 1) - 4 * rnd(i, 3))::real AS y
FROM generate_series(1, 1000) i;
SELECT nn_create('imp_net', '[{"type": "dense", "units": 16, "activation": "tanh"},
                              {"type": "dense", "units": 1}]', '{5}', 3);
SELECT count(*) FROM nn_fit('imp_net', 'SELECT a, b, c, d, y FROM imp_data', epochs => 40,
                            batch_size => 16, learning_rate => 0.01, seed => 1,
                            verbose => false);
SELECT value < 0.05 AS fits FROM nn_evaluate('imp_net', 'SELECT a, b, c, d, y FROM imp_data')
WHERE metric = 'mse';

-- c, then a; b and the two-value column d barely matter
SELECT feature, importance > 0.1 AS matters,
       importance < 0.05 * max(importance) OVER () AS near_zero,
       stddev >= 0 AS has_stddev
FROM nn_feature_importance('imp_net', 'SELECT a, b, c, d, y FROM imp_data', seed => 7);
-- the same seed, the same figures
SELECT (SELECT array_agg(importance ORDER BY feature)
        FROM nn_feature_importance('imp_net', 'SELECT a, b, c, d, y FROM imp_data',
                                   repeats => 3, seed => 11)) =
       (SELECT array_agg(importance ORDER BY feature)
        FROM nn_feature_importance('imp_net', 'SELECT a, b, c, d, y FROM imp_data',
                                   repeats => 3, seed => 11)) AS repeatable;
-- one repeat: no spread
SELECT count(*) FILTER (WHERE stddev = 0) AS zero_stddev
FROM nn_feature_importance('imp_net', 'SELECT a, b, c, d, y FROM imp_data', repeats => 1,
                           seed => 1);

-- bad input
SELECT * FROM nn_feature_importance('imp_net', 'SELECT a, b, c, d, y FROM imp_data', repeats => 0);
SELECT * FROM nn_feature_importance('imp_net', 'SELECT a, b, c, d, y FROM imp_data', repeats => NULL);
SELECT * FROM nn_feature_importance('imp_net', 'SELECT a, b, c, d, y FROM imp_data WHERE false');
SELECT * FROM nn_feature_importance('imp_nosuch', 'SELECT a, b, c, d, y FROM imp_data');
SELECT * FROM nn_feature_importance('imp_net', NULL);
SELECT * FROM nn_feature_importance('imp_net', 'SELECT a, b, c, y FROM imp_data');
-- columns whose lengths change between rows cannot be shuffled
SELECT * FROM nn_feature_importance('imp_net',
  'SELECT CASE WHEN id = 5 THEN ARRAY[a] ELSE ARRAY[a, b] END, c,
          CASE WHEN id = 5 THEN ARRAY[1, 2, 3]::real[] ELSE d END, y
   FROM imp_data WHERE id <= 5 ORDER BY id');

SELECT nn_drop('imp_net');
DROP TABLE imp_data;
