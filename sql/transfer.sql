--
-- transfer: frozen layers ("trainable": false), models made from the first
-- layers of a base model (nn_create's base), and knowledge distillation
-- (nn_fit's teacher options)
--
SET nnpg.threads = 1;
SET search_path = public;

-- three classes of 6 features: class c has its signal in features 2c, 2c+1
CREATE TABLE tl_data AS
SELECT i AS id, i % 3 AS label,
       (SELECT array_agg(CASE WHEN f / 2 = i % 3 THEN 1.0 ELSE 0.0 END
                         + 0.4 * (rnd(i, f) - 0.5) ORDER BY f)
        FROM generate_series(0, 5) f)::real[] AS x
FROM generate_series(1, 300) i;

-- ---------- frozen layers ----------

SELECT nn_create('tl_frozen', '[
  {"type": "dense", "units": 8, "activation": "relu", "trainable": false},
  {"type": "batchnorm", "trainable": false},
  {"type": "dropout", "rate": 0.1},
  {"type": "dense", "units": 3, "activation": "softmax"}
]', input_shape => '{6}', seed => 3);
-- trainable is NULL where there are no weights
SELECT layer, type, params, trainable FROM nn_summary('tl_frozen');
-- the stored spec keeps the flag
SELECT layers -> 0 -> 'trainable' AS l1, layers -> 3 -> 'trainable' AS l4
FROM nnpg.models WHERE name = 'tl_frozen';
SELECT count(*) AS epochs, min(loss) < max(loss) AS head_learns
FROM nn_fit('tl_frozen', 'SELECT x, label FROM tl_data', epochs => 3,
            batch_size => 16, seed => 1, verbose => false);

-- the frozen dense layer and batchnorm (weights and moving statistics) are
-- as nn_create made them: their copies from version 1 and 2 agree
SELECT nn_create('tl_v1', '[]', base => 'tl_frozen', base_version => 1,
                 base_layers => 2, seed => 1),
       nn_create('tl_v2', '[]', base => 'tl_frozen', base_version => 2,
                 base_layers => 2, seed => 1);
SELECT count(*) FILTER (WHERE nn_predict('tl_v1', x) = nn_predict('tl_v2', x)) AS same,
       count(*) AS rows
FROM tl_data WHERE id <= 50;

-- no optimizer state for frozen layers: Adam keeps two floats per
-- trainable parameter, so the unfrozen twin's bytes are 8 per frozen
-- parameter larger, less the 60 bytes a layer record of format version 3
-- adds to each of the four layers
SELECT nn_create('tl_twin', '[
  {"type": "dense", "units": 8, "activation": "relu"},
  {"type": "batchnorm"},
  {"type": "dropout", "rate": 0.1},
  {"type": "dense", "units": 3, "activation": "softmax"}
]', input_shape => '{6}', seed => 3);
SELECT count(*) FROM nn_fit('tl_twin', 'SELECT x, label FROM tl_data', epochs => 1,
                            batch_size => 16, seed => 1, verbose => false);
SELECT (SELECT octet_length(weights) FROM nnpg.models WHERE name = 'tl_twin' AND version = 2)
     - (SELECT octet_length(weights) FROM nnpg.models WHERE name = 'tl_frozen' AND version = 2)
     = 8 * (6 * 8 + 8 + 2 * 8) - 4 * 60 AS slots_only_for_trainable;

-- a model whose every layer is frozen fits and changes nothing
SELECT nn_create('tl_ice', '[
  {"type": "dense", "units": 4, "activation": "tanh", "trainable": false},
  {"type": "dense", "units": 3, "activation": "softmax", "trainable": false}
]', input_shape => '{6}', seed => 4);
SELECT count(*) FROM nn_fit('tl_ice', 'SELECT x, label FROM tl_data', epochs => 2,
                            seed => 1, verbose => false);
SELECT count(*) FILTER (WHERE nn_predict('tl_ice', x, 1) = nn_predict('tl_ice', x, 2)) AS same
FROM tl_data WHERE id <= 20;

-- only layers with weights take the flag
SELECT nn_create('tl_bad', '[{"type": "dropout", "rate": 0.5, "trainable": false},
                             {"type": "dense", "units": 2}]', input_shape => '{6}');
SELECT nn_create('tl_bad', '[{"type": "dense", "units": 2, "trainable": "no"}]',
                 input_shape => '{6}');

-- ---------- transfer ----------

SELECT nn_create('tl_base', '[
  {"type": "dense", "units": 16, "activation": "relu"},
  {"type": "dense", "units": 8, "activation": "relu"},
  {"type": "dense", "units": 3, "activation": "softmax"}
]', input_shape => '{6}', seed => 7);
SELECT count(*) FROM nn_fit('tl_base', 'SELECT x, label FROM tl_data', epochs => 5,
                            batch_size => 16, seed => 2, learning_rate => 0.01,
                            verbose => false);
-- default: every layer but the last, frozen, then the new layers
SELECT nn_create('tl_new', '[{"type": "dense", "units": 2, "activation": "softmax"}]',
                 base => 'tl_base', seed => 8);
SELECT layer, type, output_shape, params, trainable FROM nn_summary('tl_new');
SELECT training -> 'base' AS base, training -> 'input_shape' AS input_shape
FROM nnpg.models WHERE name = 'tl_new';
-- the stored spec is the whole model
SELECT jsonb_array_length(layers) AS layers FROM nnpg.models WHERE name = 'tl_new';
-- the base's first two layers, to compare with
SELECT nn_create('tl_prefix', '[]', base => 'tl_base', base_layers => 2, seed => 1);
-- binary labels for the new head: it trains, the copied layers stay the
-- base's
CREATE TABLE tl_bin AS SELECT x, (label = 2)::int AS label FROM tl_data;
SELECT count(*) FROM nn_fit('tl_new', 'SELECT x, label FROM tl_bin', epochs => 3,
                            batch_size => 16, seed => 3, learning_rate => 0.01,
                            verbose => false);
SELECT nn_create('tl_prefix2', '[]', base => 'tl_new', base_layers => 2, seed => 1);
SELECT count(*) FILTER (WHERE nn_predict('tl_prefix', x) = nn_predict('tl_prefix2', x)) AS same,
       count(*) AS rows
FROM tl_data WHERE id <= 50;
SELECT metric, value > 0.9 AS learned
FROM nn_evaluate('tl_new', 'SELECT x, label FROM tl_bin') WHERE metric = 'accuracy';
-- freeze_base => false: the copied layers train too
SELECT nn_create('tl_thaw', '[{"type": "dense", "units": 2, "activation": "softmax"}]',
                 base => 'tl_base', freeze_base => false, seed => 8);
SELECT layer, trainable FROM nn_summary('tl_thaw');
SELECT count(*) FROM nn_fit('tl_thaw', 'SELECT x, label FROM tl_bin', epochs => 1,
                            batch_size => 16, seed => 3, verbose => false);
SELECT nn_create('tl_prefix3', '[]', base => 'tl_thaw', base_layers => 2, seed => 1);
SELECT count(*) FILTER (WHERE nn_predict('tl_prefix', x) = nn_predict('tl_prefix3', x)) AS same
FROM tl_data WHERE id <= 50;
-- a base version, and the whole base
SELECT nn_create('tl_v1base', '[]', base => 'tl_base', base_version => 1, base_layers => 3);
SELECT nn_predict('tl_v1base', x) = nn_predict('tl_base', x, 1) AS same_as_v1
FROM tl_data WHERE id = 1;

-- bad input: nothing is stored
SELECT nn_create('tl_err', '[]', base => 'tl_nosuch');
SELECT nn_create('tl_err', '[]', base => 'tl_base', base_version => 9);
SELECT nn_create('tl_err', '[]', base => 'tl_base', base_layers => 4);
SELECT nn_create('tl_err', '[]', base => 'tl_base', base_layers => 0);
SELECT nn_create('tl_err', '[]', base => 'tl_base', input_shape => '{7}');
SELECT nn_create('tl_err', '[]', base => 'tl_base', freeze_base => NULL);
SELECT nn_create('tl_err', '[]');
SELECT nn_create('tl_err', '[{"type": "conv2d", "filters": 2, "kernel_size": 3}]',
                 base => 'tl_base');
SELECT nn_create('tl_unbuilt', '[{"type": "dense", "units": 2}]');
SELECT nn_create('tl_err', '[]', base => 'tl_unbuilt');
SELECT count(*) FROM nnpg.models WHERE name = 'tl_err';
-- a base the role does not own does not exist for it
CREATE ROLE nnpg_tl_carol;
SET ROLE nnpg_tl_carol;
SELECT nn_create('tl_err', '[]', base => 'tl_base');
RESET ROLE;
DROP ROLE nnpg_tl_carol;

-- ---------- distillation ----------

-- teacher: tl_base (trained above); student: a smaller network
SELECT nn_create('tl_student', '[
  {"type": "dense", "units": 8, "activation": "relu"},
  {"type": "dense", "units": 3, "activation": "softmax"}
]', input_shape => '{6}', seed => 11);
SELECT nn_create('tl_plain', '[
  {"type": "dense", "units": 8, "activation": "relu"},
  {"type": "dense", "units": 3, "activation": "softmax"}
]', input_shape => '{6}', seed => 11);
-- the loss column is the combined loss: with distill_alpha 1 it is the
-- plain loss, and training is the same as without a teacher
SELECT d.epoch, d.loss = p.loss AS same_loss
FROM nn_fit('tl_student', 'SELECT x, label FROM tl_data', epochs => 2, seed => 5,
            options => '{"teacher": "tl_base", "distill_alpha": 1}', verbose => false) d
JOIN nn_fit('tl_plain', 'SELECT x, label FROM tl_data', epochs => 2, seed => 5,
            verbose => false) p USING (epoch)
ORDER BY 1;
-- with the defaults (temperature 4, distill_alpha 0.1) the student learns
SELECT count(*) AS epochs, (array_agg(accuracy ORDER BY epoch DESC))[1] > 0.9 AS learned
FROM nn_fit('tl_student', 'SELECT x, label FROM tl_data', epochs => 10,
            batch_size => 16, seed => 6, learning_rate => 0.01,
            options => '{"teacher": "tl_base"}', verbose => false);
SELECT training -> 'teacher' AS teacher
FROM nnpg.models WHERE name = 'tl_student' AND version = 3;

-- bad input: nothing is stored
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_student"}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_nosuch"}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_new"}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_base", "temperature": 0}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_base", "temperature": -1}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_base", "distill_alpha": 1.5}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_base", "distill_alpha": -0.1}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_base", "teacher_version": 0}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": "tl_base", "teacher_version": 7}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"temperature": 2}');
SELECT nn_fit('tl_student', 'SELECT x, label FROM tl_data', options => '{"teacher": 5}');
-- a softmax student distils on its logits: only with a cross-entropy loss
SELECT nn_fit('tl_student', 'SELECT x, (SELECT array_agg((k = label)::int::real ORDER BY k)
                                       FROM generate_series(0, 2) k) FROM tl_data',
              loss => 'mse', options => '{"teacher": "tl_base"}');
SELECT max(version) FROM nnpg.models WHERE name = 'tl_student';

SELECT nn_drop(name) FROM (SELECT DISTINCT name FROM nnpg.models WHERE name LIKE 'tl\_%') n
ORDER BY name;
DROP TABLE tl_data, tl_bin;
