--
-- cnn: convolutional models on small images made in SQL; pools, dropout,
-- rescale and normalize layers
--
SET nnpg.threads = 1;
SET search_path = public;

-- the model of the documentation: 93,322 parameters, as Keras counts them
SELECT nn_create('fashion_cnn', '[
  {"type": "reshape",   "shape": [28, 28, 1]},
  {"type": "conv2d",    "filters": 32, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d",    "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d",    "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "flatten"},
  {"type": "dense",     "units": 64, "activation": "relu"},
  {"type": "dense",     "units": 10, "activation": "softmax"}
]', input_shape => '{784}', seed => 42);
SELECT * FROM nn_summary('fashion_cnn');
SELECT sum(params) AS total FROM nn_summary('fashion_cnn');
SELECT params FROM nn_models WHERE name = 'fashion_cnn';
-- a byte image runs through it
SELECT array_length(nn_predict('fashion_cnn', decode(repeat('7f', 784), 'hex')), 1) AS outputs;

-- 8x8 byte images: a horizontal bar (class 0) or a vertical bar (class 1)
-- at a position that varies, on a noisy background
CREATE TABLE bars AS
SELECT i AS id, i % 2 AS label,
       (SELECT string_agg(CASE
                 WHEN i % 2 = 0 AND r = (i / 2) % 8 THEN '\xff'::bytea
                 WHEN i % 2 = 1 AND c = (i / 2) % 8 THEN '\xff'::bytea
                 ELSE set_byte('\x00'::bytea, 0, (rnd(i, r * 8 + c) * 60)::int) END, ''::bytea
                 ORDER BY r, c)
        FROM generate_series(0, 7) r, generate_series(0, 7) c) AS img
FROM generate_series(1, 240) i;
SELECT length(img) AS bytes, count(*) FROM bars GROUP BY 1;

SELECT nn_create('bars_cnn', '[
  {"type": "rescale", "scale": 0.00392156862745098},
  {"type": "reshape", "shape": [8, 8, 1]},
  {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu", "padding": "same"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d", "filters": 4, "kernel_size": [3, 3], "strides": 1, "activation": "relu"},
  {"type": "avgpool2d", "pool_size": 2},
  {"type": "flatten"},
  {"type": "dropout", "rate": 0.2},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', seed => 7);
-- (no input shape: the first fit takes 64 from the bytea column)
SELECT epoch, accuracy > 0.9 AS good, val_accuracy > 0.9 AS val_good
FROM nn_fit('bars_cnn', 'SELECT img, label FROM bars ORDER BY id', epochs => 8, batch_size => 16,
            learning_rate => 0.01, validation_split => 0.25, seed => 3, verbose => false)
WHERE epoch = 8;
SELECT * FROM nn_summary('bars_cnn');
SELECT metric, round(value::numeric, 2) AS value FROM nn_evaluate('bars_cnn', 'SELECT img, label FROM bars')
WHERE metric IN ('accuracy', 'n');
SELECT count(*) FILTER (WHERE nn_classify('bars_cnn', img) = label) > 216 AS per_row_good FROM bars;
-- dropout is off at prediction: the same input gives the same output
SELECT nn_predict('bars_cnn', img) = nn_predict('bars_cnn', img) AS stable FROM bars WHERE id = 1;

-- real[] images and strided convolutions
SELECT nn_create('bars_real', '[
  {"type": "reshape", "shape": [8, 8, 1]},
  {"type": "conv2d", "filters": 4, "kernel_size": [1, 8], "strides": [1, 1], "activation": "tanh"},
  {"type": "conv2d", "filters": 2, "kernel_size": [2, 1], "strides": [2, 1]},
  {"type": "activation", "activation": "relu"},
  {"type": "flatten"},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', '{64}', 11);
SELECT * FROM nn_summary('bars_real');
SELECT epoch, accuracy > 0.9 AS good
FROM nn_fit('bars_real', $$SELECT (SELECT array_agg(get_byte(img, k) / 255.0 ORDER BY k)
                                   FROM generate_series(0, 63) k)::real[], label FROM bars$$,
            epochs => 10, learning_rate => 0.05, seed => 3, verbose => false)
WHERE epoch = 10;

-- normalize learns each feature's mean and variance at the first fit: badly
-- scaled inputs (offset 5000, scale 1000) still train
CREATE TABLE scaled AS SELECT id, ARRAY[x[1] * 1000 + 5000, x[2] * 0.001 - 7]::real[] AS x, y FROM blobs;
SELECT nn_create('normed', '[{"type": "normalize"},
                             {"type": "dense", "units": 4, "activation": "relu"},
                             {"type": "dense", "units": 2, "activation": "softmax"}]', '{2}', 5);
SELECT * FROM nn_summary('normed');
SELECT epoch, accuracy > 0.9 AS good
FROM nn_fit('normed', 'SELECT x, y FROM scaled', epochs => 5, learning_rate => 0.01, seed => 1,
            verbose => false)
WHERE epoch = 5;
-- the statistics are kept: version 2 predicts as well
SELECT metric, round(value::numeric, 2) AS value FROM nn_evaluate('normed', 'SELECT x, y FROM scaled')
WHERE metric = 'accuracy';
-- and streamed data adapts too
SET nnpg.data_cache_mb = 0;
SELECT count(*) FROM nn_fit('normed', 'SELECT x, y FROM scaled', epochs => 5, seed => 1,
                            learning_rate => 0.01, verbose => false, options => '{"reset": true}');
RESET nnpg.data_cache_mb;
SELECT metric, value > 0.9 AS good FROM nn_evaluate('normed', 'SELECT x, y FROM scaled')
WHERE metric = 'accuracy';

SELECT nn_drop('fashion_cnn'), nn_drop('bars_real'), nn_drop('normed');
