--
-- augment: Keras's image augmentation layers; random only while nn_fit
-- trains, repeatable from its seed, the identity at prediction (random_crop:
-- the centre crop)
--
SET nnpg.threads = 1;
SET search_path = public;

-- 8x8 single-channel images: a bar across (class 0) or down (class 1)
CREATE TABLE aug_img AS
SELECT i AS id, i % 2 AS label,
       (SELECT array_agg(CASE WHEN (i % 2 = 0 AND r = 1 + i % 6)
                               OR (i % 2 = 1 AND c = 1 + i % 6)
                              THEN 1.0 ELSE 0.2 * rnd(i, r * 8 + c) END
                         ORDER BY r, c)
        FROM generate_series(0, 7) r, generate_series(0, 7) c)::real[] AS x
FROM generate_series(1, 200) i;

-- every kind, with their defaults filled in and the shapes they give
SELECT nn_create('aug_all', '[
  {"type": "reshape", "shape": [8, 8, 1]},
  {"type": "random_flip"},
  {"type": "random_translation", "height_factor": 0.1, "width_factor": [-0.2, 0.1]},
  {"type": "random_rotation", "factor": 0.05, "fill_mode": "constant", "fill_value": 0.5},
  {"type": "random_zoom", "height_factor": [-0.1, 0.2], "fill_mode": "nearest"},
  {"type": "random_contrast", "factor": 0.2},
  {"type": "random_brightness", "factor": 0.1},
  {"type": "gaussian_noise", "stddev": 0.05},
  {"type": "random_crop", "height": 6, "width": 7},
  {"type": "flatten"},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', input_shape => '{64}', seed => 5);
SELECT layer, type, output_shape, params FROM nn_summary('aug_all');
-- the spec as nn_import gives it back: every option, defaults included
SELECT nn_import('aug_copy', nn_export('aug_all'));
SELECT jsonb_pretty(layers) FROM nnpg.models WHERE name = 'aug_copy';
SELECT nn_predict('aug_copy', x) = nn_predict('aug_all', x) AS same
FROM aug_img WHERE id = 3;

-- at prediction the random layers are the identity: the same weights
-- without them (Glorot draws only for weighted layers) predict the same
SELECT nn_create('aug_on', '[
  {"type": "reshape", "shape": [8, 8, 1]},
  {"type": "random_flip", "mode": "horizontal_and_vertical"},
  {"type": "random_translation", "height_factor": 0.2, "width_factor": 0.2},
  {"type": "random_rotation", "factor": 0.1},
  {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
  {"type": "flatten"},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', input_shape => '{64}', seed => 9);
SELECT nn_create('aug_off', '[
  {"type": "reshape", "shape": [8, 8, 1]},
  {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
  {"type": "flatten"},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', input_shape => '{64}', seed => 9);
SELECT count(*) FILTER (WHERE nn_predict('aug_on', x) = nn_predict('aug_off', x)) AS equal,
       count(*) AS rows
FROM aug_img;

-- training draws per row from the fit's seed: the same seed gives the same
-- fit, another seed another one, and the model still learns
SELECT nn_create('aug_a', (SELECT layers FROM nnpg.models WHERE name = 'aug_on'),
                 input_shape => '{64}', seed => 9);
SELECT nn_create('aug_b', (SELECT layers FROM nnpg.models WHERE name = 'aug_on'),
                 input_shape => '{64}', seed => 9);
SELECT nn_create('aug_c', (SELECT layers FROM nnpg.models WHERE name = 'aug_on'),
                 input_shape => '{64}', seed => 9);
CREATE TABLE aug_fits AS
SELECT m, f.epoch, f.loss, f.accuracy
FROM unnest(ARRAY['aug_a', 'aug_b', 'aug_c']) m,
     LATERAL nn_fit(m, 'SELECT x, label FROM aug_img', epochs => 8,
                    batch_size => 20, learning_rate => 0.01,
                    seed => CASE m WHEN 'aug_c' THEN 4 ELSE 3 END,
                    verbose => false) f;
SELECT a.loss = b.loss AS same_seed_same_loss, a.loss <> c.loss AS other_seed_other_loss
FROM aug_fits a, aug_fits b, aug_fits c
WHERE a.m = 'aug_a' AND b.m = 'aug_b' AND c.m = 'aug_c'
  AND a.epoch = 8 AND b.epoch = 8 AND c.epoch = 8;
SELECT metric, value > 0.9 AS good FROM nn_evaluate('aug_a', 'SELECT x, label FROM aug_img')
WHERE metric = 'accuracy';

-- random_crop takes the centre at prediction: an 8x8 image cropped to 4x4
-- reads rows and columns 2..5
SELECT nn_create('aug_crop', '[
  {"type": "reshape", "shape": [8, 8, 1]},
  {"type": "random_crop", "height": 4, "width": 4},
  {"type": "flatten"}
]', input_shape => '{64}', seed => 1);
SELECT nn_predict('aug_crop', (SELECT array_agg(v::real ORDER BY v) FROM generate_series(0, 63) v));

-- bad specs name the layer and the option
SELECT err($$SELECT nn_create('bad', '[{"type": "random_flip"}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_flip", "mode": "diagonal"}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_rotation"}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_rotation", "factor": 2}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_translation", "height_factor": 0.1, "width_factor": [0.3, 0.1]}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_translation", "height_factor": 1.5, "width_factor": 0.1}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_zoom", "height_factor": -1}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_zoom", "height_factor": 0.1, "fill_mode": "mirror"}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_crop", "height": 9, "width": 4}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_crop", "height": 4}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_contrast", "factor": -0.5}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_brightness", "factor": 0.1, "value_range": [1, 0]}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "gaussian_noise", "stddev": -1}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "gaussian_noise"}]', '{64}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "reshape", "shape": [8, 8, 1]}, {"type": "random_flip", "factor": 0.1}]', '{64}')$$);
SELECT count(*) AS stored FROM nnpg.models WHERE name = 'bad';

SELECT nn_drop(m) FROM unnest(ARRAY['aug_all', 'aug_copy', 'aug_on', 'aug_off',
                                    'aug_a', 'aug_b', 'aug_c', 'aug_crop']) m;
DROP TABLE aug_img, aug_fits;
