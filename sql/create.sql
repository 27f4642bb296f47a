--
-- create: nn_create, versions, seeds, replace; and the data the later
-- tests share
--
SET nnpg.threads = 1;
SET search_path = public;

-- two blobs in the plane: class 0 around (-1.5, -1), class 1 around (1.5, 1)
CREATE TABLE blobs AS
SELECT i AS id,
       ARRAY[(2 * (i % 2) - 1) * 1.5 + (rnd(i, 1) - 0.5) * 2,
             (2 * (i % 2) - 1) * 1.0 + (rnd(i, 2) - 0.5) * 2]::real[] AS x,
       i % 2 AS y
FROM generate_series(1, 400) i;

-- a regression: y = 2 a - b + 0.5 + noise
CREATE TABLE reg AS
SELECT i AS id, a, b, 2 * a - b + 0.5 + (rnd(i, 5) - 0.5) * 0.05 AS y
FROM (SELECT i, rnd(i, 3) * 2 - 1 AS a, rnd(i, 4) * 2 - 1 AS b
      FROM generate_series(1, 300) i) s;

-- version 1, built at once from the input shape
SELECT nn_create('blob_net', '[
  {"type": "dense", "units": 8, "activation": "relu"},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', input_shape => '{2}', seed => 42);
SELECT name, version, owner = current_user AS mine, params, size_bytes > 0 AS has_bytes,
       metrics, training
FROM nn_models WHERE name = 'blob_net';
SELECT layers FROM nnpg.models WHERE name = 'blob_net';

-- the same seed gives the same weights, another seed others
SELECT nn_create('blob_net_b', (SELECT layers FROM nnpg.models WHERE name = 'blob_net'),
                 '{2}', 42);
SELECT nn_create('blob_net_c', (SELECT layers FROM nnpg.models WHERE name = 'blob_net'),
                 '{2}', 43);
SELECT nn_export('blob_net') = nn_export('blob_net_b') AS same_seed_same_bytes,
       nn_export('blob_net') = nn_export('blob_net_c') AS other_seed_same_bytes;

-- a random seed is chosen and recorded
SELECT nn_create('blob_net_r', '[{"type": "dense", "units": 2, "activation": "softmax"}]', '{2}');
SELECT (training->>'seed')::bigint >= 0 AS seed_recorded FROM nnpg.models WHERE name = 'blob_net_r';

-- an existing name is 42710 unless replace
SELECT nn_create('blob_net', '[{"type": "dense", "units": 1}]', '{2}');
SELECT nn_create('blob_net_c', '[{"type": "dense", "units": 3, "activation": "softmax"}]', '{5}',
                 replace => true);
SELECT version, params FROM nn_models WHERE name = 'blob_net_c';

-- a leading reshape fixes the input size
SELECT nn_create('reshaped', '[{"type": "reshape", "shape": [4, 4, 1]},
                               {"type": "flatten"},
                               {"type": "dense", "units": 2}]');
SELECT training->'input_shape' AS input_shape FROM nnpg.models WHERE name = 'reshaped';
SELECT * FROM nn_summary('reshaped');

-- without an input shape the model waits for its first fit
SELECT nn_create('later', '[{"type": "dense", "units": 1}]', seed => 7);
SELECT weights IS NULL AS no_weights, params, training FROM nnpg.models WHERE name = 'later';
SELECT * FROM nn_summary('later');
SELECT nn_predict('later', '{1,2}'::real[]);
SELECT nn_export('later');

SELECT nn_drop('blob_net_b'), nn_drop('blob_net_c'), nn_drop('blob_net_r'), nn_drop('reshaped');
