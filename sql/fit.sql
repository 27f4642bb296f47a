--
-- fit: training with every optimizer and loss, targets of every kind,
-- validation, early stopping, schedules, continued training, versions
--
SET nnpg.threads = 1;
SET search_path = public;

-- the blobs: a small dense net separates them
SELECT epoch, accuracy > 0.9 AS good, val_loss IS NULL AS no_val
FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', epochs => 5, batch_size => 16,
            learning_rate => 0.01, seed => 1, verbose => false)
ORDER BY epoch DESC LIMIT 1;
SELECT version, metrics->>'epoch' AS epoch, training->>'loss' AS loss,
       training->>'optimizer' AS optimizer, training->>'from_version' AS from_version,
       training->>'rows' AS rows, jsonb_array_length(history) AS epochs
FROM nnpg.models WHERE name = 'blob_net' ORDER BY version;

-- verbose reports each epoch as a NOTICE; timings vary, so they are hidden
SET client_min_messages = warning;
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', epochs => 1, seed => 1,
                            verbose => true);
RESET client_min_messages;

-- repeatable: same weights, same seed, same thread count, same losses
SELECT nn_create('det_a', layers, '{2}', 5) FROM nnpg.models WHERE name = 'blob_net' AND version = 1;
SELECT nn_create('det_b', layers, '{2}', 5) FROM nnpg.models WHERE name = 'blob_net' AND version = 1;
SELECT (SELECT array_agg(loss ORDER BY epoch) FROM nn_fit('det_a', 'SELECT x, y FROM blobs', epochs => 3, seed => 11, verbose => false))
     = (SELECT array_agg(loss ORDER BY epoch) FROM nn_fit('det_b', 'SELECT x, y FROM blobs', epochs => 3, seed => 11, verbose => false))
  AS repeatable;
SELECT nn_export('det_a') = nn_export('det_b') AS same_weights;

-- every optimizer learns the blobs
CREATE TABLE opts(opt text, lr float8);
INSERT INTO opts VALUES ('sgd', 0.1), ('momentum', 0.05), ('nesterov', 0.05),
  ('adagrad', 0.1), ('rmsprop', 0.01), ('adam', 0.01), ('adamw', 0.01);
SELECT opt, nn_create('opt_' || opt, '[{"type": "dense", "units": 8, "activation": "tanh"},
                                       {"type": "dense", "units": 2, "activation": "softmax"}]',
                      '{2}', 3)
FROM opts ORDER BY opt;
SELECT opt, (SELECT accuracy FROM nn_fit('opt_' || opt, 'SELECT x, y FROM blobs', epochs => 4,
                                         optimizer => opt, learning_rate => lr, seed => 2,
                                         verbose => false)
             ORDER BY epoch DESC LIMIT 1) > 0.9 AS learned
FROM opts ORDER BY opt;
SELECT name, training->>'optimizer' AS optimizer FROM nnpg.models
WHERE name LIKE 'opt\_%' AND version = 2 ORDER BY name;
-- optimizer parameters go in options; bad ones name the option
SELECT epoch FROM nn_fit('opt_sgd', 'SELECT x, y FROM blobs', epochs => 1, optimizer => 'momentum',
                         learning_rate => 0.01, seed => 1, verbose => false,
                         options => '{"momentum": 0.5, "clipnorm": 1.0, "clipvalue": 0.5}');
SELECT epoch FROM nn_fit('opt_adam', 'SELECT x, y FROM blobs', epochs => 1, optimizer => 'adamw',
                         seed => 1, verbose => false,
                         options => '{"beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6, "weight_decay": 0.01}');
SELECT epoch FROM nn_fit('opt_rmsprop', 'SELECT x, y FROM blobs', epochs => 1, optimizer => 'rmsprop',
                         seed => 1, verbose => false, options => '{"rho": 0.8}');
SELECT err($$SELECT * FROM nn_fit('opt_adam', 'SELECT x, y FROM blobs', options => '{"beta1": 1.5}')$$) LIKE '22023:%beta1%' AS bad_beta1;
SELECT err($$SELECT * FROM nn_fit('opt_adam', 'SELECT x, y FROM blobs', options => '{"momentum": -1}')$$) LIKE '22023:%momentum%' AS bad_momentum;

-- every loss; NULL infers it from the output layer and the target
CREATE TABLE losses(loss text, act text, units int, target text);
INSERT INTO losses VALUES
  ('sparse_categorical_crossentropy', 'softmax', 2, 'y'),
  ('categorical_crossentropy', 'softmax', 2, 'CASE y WHEN 0 THEN ''{1,0}''::real[] ELSE ''{0,1}''::real[] END'),
  ('binary_crossentropy', 'sigmoid', 1, 'y'),
  ('mse', 'linear', 1, 'y::float8'),
  ('mae', 'linear', 1, 'y::float8'),
  ('huber', 'linear', 1, 'y::float8');
SELECT loss, nn_create('loss_' || loss, jsonb_build_array(
         '{"type": "dense", "units": 8, "activation": "tanh"}'::jsonb,
         jsonb_build_object('type', 'dense', 'units', units, 'activation', act)), '{2}', 4)
FROM losses ORDER BY loss;
SELECT loss, (SELECT array_agg(f.loss ORDER BY epoch) FROM nn_fit('loss_' || l.loss,
                  'SELECT x, ' || target || ' FROM blobs', epochs => 3, learning_rate => 0.01,
                  loss => l.loss, seed => 1, verbose => false) f) AS losses
INTO TEMP fitted FROM losses l;
SELECT loss, losses[3] < losses[1] AS decreasing FROM fitted ORDER BY loss;
-- inferred: the same losses without naming them
SELECT loss, (SELECT count(*) FROM nn_fit('loss_' || l.loss, 'SELECT x, ' || target || ' FROM blobs',
                  epochs => 1, seed => 1, verbose => false)) AS epochs
FROM losses l WHERE loss IN ('sparse_categorical_crossentropy', 'categorical_crossentropy',
                             'binary_crossentropy', 'mse')
ORDER BY loss;
SELECT name, training->>'loss' AS inferred FROM nnpg.models m
WHERE name LIKE 'loss\_%' AND version = 3 ORDER BY name;
-- accuracy is NULL for regression losses
SELECT accuracy IS NULL AS no_accuracy FROM nn_fit('loss_mse', 'SELECT x, y::float8 FROM blobs',
  epochs => 1, seed => 1, verbose => false);

-- regression on scalar columns of several types
SELECT nn_create('reg_net', '[{"type": "dense", "units": 1}]', '{2}', 1);
SELECT epoch, loss < 0.01 AS fits, accuracy
FROM nn_fit('reg_net', 'SELECT a::real, b::numeric, y FROM reg', epochs => 40,
            learning_rate => 0.05, seed => 1, verbose => false)
WHERE epoch = 40;

-- vector target: several outputs (here an identity map, x -> x)
SELECT nn_create('auto', '[{"type": "dense", "units": 4, "activation": "linear"},
                           {"type": "dense", "units": 2}]', '{2}', 1);
SELECT loss < 0.05 AS fits FROM nn_fit('auto', 'SELECT x, x FROM blobs', epochs => 20,
                                       learning_rate => 0.01, seed => 1, verbose => false)
WHERE epoch = 20;
SELECT training->>'loss' AS loss FROM nnpg.models WHERE name = 'auto' AND version = 2;

-- every feature type, concatenated in column order
SELECT nn_create('types', '[{"type": "dense", "units": 2, "activation": "softmax"}]', '{12}', 1);
SELECT count(*) FROM nn_fit('types', $$
  SELECT x[1]::real, x[2]::float8, (x[1] * 10)::int, (x[2] * 10)::bigint, (x[1] * 10)::smallint,
         x[2]::numeric, x[1] > 0, x::float8[], ARRAY[(x[1] * 10)::int], ARRAY[(x[2] * 10)::smallint],
         '\x07'::bytea, y
  FROM blobs$$, epochs => 1, seed => 1, verbose => false);
-- every target type: smallint, bigint and boolean classes, numeric and real
-- values, double precision[] vectors
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y::smallint FROM blobs', epochs => 1, seed => 1, verbose => false);
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y::bigint FROM blobs', epochs => 1, seed => 1, verbose => false);
SELECT count(*) FROM nn_fit('loss_binary_crossentropy', 'SELECT x, y = 1 FROM blobs', epochs => 1, seed => 1, verbose => false);
SELECT count(*) FROM nn_fit('loss_mse', 'SELECT x, y::numeric FROM blobs', epochs => 1, seed => 1, verbose => false);
SELECT count(*) FROM nn_fit('loss_mse', 'SELECT x, y::real FROM blobs', epochs => 1, seed => 1, verbose => false);
SELECT count(*) FROM nn_fit('auto', 'SELECT x, x::float8[] FROM blobs', epochs => 1, seed => 1, verbose => false);

-- class weights: an array, or an object of class: weight
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', epochs => 1, seed => 1, verbose => false,
                            options => '{"class_weight": [1.0, 3.0]}');
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', epochs => 1, seed => 1, verbose => false,
                            options => '{"class_weight": {"1": 0.5}}');
SELECT count(*) FROM nn_fit('loss_binary_crossentropy', 'SELECT x, y FROM blobs', epochs => 1, seed => 1,
                            verbose => false, options => '{"class_weight": [1, 2]}');

-- validation: the last fraction of the rows, or a query
SELECT epoch, val_loss IS NOT NULL AS has_val_loss, val_accuracy > 0.9 AS good
FROM nn_fit('blob_net', 'SELECT x, y FROM blobs ORDER BY id', epochs => 2, validation_split => 0.25,
            seed => 1, verbose => false);
SELECT training->'rows' AS rows, training->'validation_rows' AS validation_rows
FROM nnpg.models WHERE name = 'blob_net' ORDER BY version DESC LIMIT 1;
SELECT epoch, val_accuracy > 0.9 AS good
FROM nn_fit('blob_net', 'SELECT x, y FROM blobs WHERE id <= 300',
            validation_query => 'SELECT x, y FROM blobs WHERE id > 300', epochs => 2,
            seed => 1, verbose => false);
SELECT training->'rows' AS rows, training->'validation_rows' AS validation_rows,
       training->>'validation_query' AS validation_query
FROM nnpg.models WHERE name = 'blob_net' ORDER BY version DESC LIMIT 1;

-- early stopping: with a learning rate too small to move the weights and no
-- shuffling, the loss stays put and training stops after `patience` epochs
SELECT nn_create('still', '[{"type": "dense", "units": 2, "activation": "softmax"}]', '{2}', 1);
SELECT count(*) AS epochs_run FROM nn_fit('still', 'SELECT x, y FROM blobs', epochs => 10,
  optimizer => 'sgd', learning_rate => 1e-30, shuffle => false, early_stopping_patience => 2,
  verbose => false);
SELECT training->'epochs_run' AS epochs_run, training->'stopped_early' AS stopped_early
FROM nnpg.models WHERE name = 'still' ORDER BY version DESC LIMIT 1;
-- monitored on val_loss when there is validation
SELECT count(*) AS epochs_run FROM nn_fit('still', 'SELECT x, y FROM blobs', epochs => 10,
  optimizer => 'sgd', learning_rate => 1e-30, shuffle => false, early_stopping_patience => 1,
  validation_split => 0.5, verbose => false);

-- learning-rate schedules, seen in the history
SELECT count(*) FROM nn_fit('still', 'SELECT x, y FROM blobs', epochs => 4, optimizer => 'sgd',
  learning_rate => 1e-20, shuffle => false, verbose => false,
  options => '{"lr_schedule": "plateau", "plateau_patience": 1, "plateau_factor": 0.5}');
SELECT array_agg((e->>'learning_rate')::float8 ORDER BY (e->>'epoch')::int) AS lr
FROM (SELECT history FROM nnpg.models WHERE name = 'still' ORDER BY version DESC LIMIT 1) m,
     jsonb_array_elements(m.history) e;
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', epochs => 2, seed => 1, verbose => false,
  options => '{"lr_schedule": "step", "decay_rate": 0.5, "decay_steps": 13}');
SELECT (history->0->>'learning_rate')::float8 > (history->1->>'learning_rate')::float8 AS step_decays
FROM nnpg.models WHERE name = 'blob_net' ORDER BY version DESC LIMIT 1;
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', epochs => 2, seed => 1, verbose => false,
  options => '{"lr_schedule": "exponential", "decay_rate": 0.9, "decay_steps": 10}');
SELECT (history->0->>'learning_rate')::float8 > (history->1->>'learning_rate')::float8 AS exp_decays
FROM nnpg.models WHERE name = 'blob_net' ORDER BY version DESC LIMIT 1;

-- continued training starts where the last version ended; reset starts over
-- (a reset model is initialised from the fit's seed: seed 9 rebuilds the
-- weights nn_create made with seed 9, so its first epoch repeats exactly)
SELECT nn_create('cont', '[{"type": "dense", "units": 8, "activation": "tanh"},
                           {"type": "dense", "units": 2, "activation": "softmax"}]', '{2}', 9);
SELECT loss AS first INTO TEMP c1 FROM nn_fit('cont', 'SELECT x, y FROM blobs', epochs => 3,
  learning_rate => 0.001, seed => 9, verbose => false) WHERE epoch = 1;
SELECT loss AS cont INTO TEMP c2 FROM nn_fit('cont', 'SELECT x, y FROM blobs', epochs => 1,
  learning_rate => 0.001, seed => 1, verbose => false);
SELECT loss AS reset INTO TEMP c3 FROM nn_fit('cont', 'SELECT x, y FROM blobs', epochs => 1,
  learning_rate => 0.001, seed => 9, verbose => false, options => '{"reset": true}');
SELECT cont < first AS continued, reset = first AS restarted FROM c1, c2, c3;
-- version => n continues from that version
SELECT count(*) FROM nn_fit('cont', 'SELECT x, y FROM blobs', epochs => 1, seed => 1, verbose => false,
                            version => 2);
SELECT version, (training->>'from_version')::int AS from_version, training ? 'init_seed' AS rebuilt
FROM nnpg.models WHERE name = 'cont' ORDER BY version;

-- a model created without an input shape is built at its first fit
SELECT count(*) FROM nn_fit('later', 'SELECT x[1], x[2], y FROM blobs', epochs => 1, verbose => false);
SELECT * FROM nn_summary('later');
SELECT training->'input_shape' AS input_shape, (training->>'init_seed')::int AS init_seed
FROM nnpg.models WHERE name = 'later' AND version = 2;

-- nulls: an error unless skipped
CREATE TABLE holes AS SELECT id, CASE WHEN id % 10 = 0 THEN NULL ELSE x END AS x, y FROM blobs;
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y FROM holes', epochs => 1, seed => 1, verbose => false,
                            options => '{"on_null": "skip"}');
SELECT training->'rows' AS rows FROM nnpg.models WHERE name = 'blob_net' ORDER BY version DESC LIMIT 1;
SET client_min_messages = warning;
SELECT count(*) FROM nn_fit('blob_net', 'SELECT x, y FROM holes', epochs => 1, seed => 1,
                            options => '{"on_null": "skip"}', verbose => true);
RESET client_min_messages;

-- data larger than nnpg.data_cache_mb is streamed, in every epoch
SET nnpg.data_cache_mb = 0;
SELECT nn_create('streamed', '[{"type": "dense", "units": 8, "activation": "relu"},
                               {"type": "dense", "units": 2, "activation": "softmax"}]', '{2}', 42);
SELECT epoch, accuracy > 0.9 AS good, val_accuracy > 0.9 AS val_good
FROM nn_fit('streamed', 'SELECT x, y FROM blobs ORDER BY id', epochs => 5, batch_size => 16,
            learning_rate => 0.01, seed => 1, validation_split => 0.2, verbose => false)
WHERE epoch = 5;
SELECT count(*) FROM nn_fit('streamed', 'SELECT x, y FROM blobs', epochs => 1, shuffle => false,
                            seed => 1, validation_query => 'SELECT x, y FROM blobs LIMIT 50',
                            verbose => false);
SELECT count(*) FROM nn_fit('types', 'SELECT ''\x0102030405060708090a0b0c''::bytea, y FROM blobs',
                            epochs => 1, seed => 1, verbose => false);
RESET nnpg.data_cache_mb;
-- bytea features kept in memory as bytes
SELECT count(*) FROM nn_fit('types', 'SELECT ''\x0102030405060708090a0b0c''::bytea, y FROM blobs',
                            epochs => 1, seed => 1, verbose => false);

-- a concurrent-safe version counter: every fit added one version
SELECT name, count(*) AS versions, max(version) AS latest FROM nnpg.models
WHERE name IN ('blob_net', 'cont', 'still') GROUP BY name ORDER BY name;
