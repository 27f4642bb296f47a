--
-- fashion: the seed CNN on real data, small and fast: 3,000 Fashion-MNIST
-- training rows (Debian's dataset-fashion-mnist) for two epochs
--
SET nnpg.threads = 1;
SET search_path = public;

-- the loader COPYs into this test's database (client side, so no server
-- file access is needed)
\setenv PGDATABASE :DBNAME
\! /usr/bin/python3 scripts/load_fashion.py --limit 3000 --layouts bytea --jobs 1 --prefix fmnist > /dev/null
SELECT count(*), count(DISTINCT label) AS classes, min(length(img)), max(length(img))
FROM fmnist_train;
SELECT count(*) FROM fmnist_test;

SELECT nn_create('fmnist_cnn', '[
  {"type": "rescale",   "scale": 0.00392156862745098},
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

-- chance is a loss of ln 10 = 2.30 and an accuracy of 0.1
SELECT epoch, loss < 2.0 AS loss_below_chance, accuracy > 0.4 AS learned
FROM nn_fit('fmnist_cnn', 'SELECT img, label FROM fmnist_train', epochs => 2,
            batch_size => 64, seed => 1, verbose => false);

-- a loose floor: two epochs on 3,000 rows reach about 0.7 (all 60,000
-- rows and five epochs reach 0.90)
SELECT metric, value > 0.6 AS above_floor
FROM nn_evaluate('fmnist_cnn', 'SELECT img, label FROM fmnist_test')
WHERE metric IN ('accuracy', 'f1');

-- per-row and batched prediction agree on every test row
SELECT count(*) AS rows, count(*) FILTER (WHERE p.class <> nn_classify('fmnist_cnn', t.img)) AS disagree
FROM fmnist_test t JOIN nn_predict_batch('fmnist_cnn', 'SELECT id, img FROM fmnist_test') p ON p.id = t.id;

-- the confusion matrix accounts for every test row
SELECT sum(count) AS total, count(DISTINCT actual) AS classes
FROM nn_confusion_matrix('fmnist_cnn', 'SELECT img, label FROM fmnist_test');

-- distillation: fmnist_cnn teaches a 784-32-10 MLP; it learns above a
-- floor, and differently from the same MLP on labels alone (the full
-- comparison, over 3 seeds on all rows, is test/bench/transfer_distill.sh)
SELECT nn_create('fmnist_student', '[{"type": "rescale", "scale": 0.00392156862745098},
  {"type": "dense", "units": 32, "activation": "relu"},
  {"type": "dense", "units": 10, "activation": "softmax"}]', input_shape => '{784}', seed => 5),
       nn_create('fmnist_labels', '[{"type": "rescale", "scale": 0.00392156862745098},
  {"type": "dense", "units": 32, "activation": "relu"},
  {"type": "dense", "units": 10, "activation": "softmax"}]', input_shape => '{784}', seed => 5);
SELECT d.epoch, d.loss <> l.loss AS distilled_loss
FROM nn_fit('fmnist_student', 'SELECT img, label FROM fmnist_train', epochs => 3,
            batch_size => 32, seed => 1, options => '{"teacher": "fmnist_cnn"}',
            verbose => false) d
JOIN nn_fit('fmnist_labels', 'SELECT img, label FROM fmnist_train', epochs => 3,
            batch_size => 32, seed => 1, verbose => false) l USING (epoch)
ORDER BY 1;
SELECT (SELECT value FROM nn_evaluate('fmnist_student', 'SELECT img, label FROM fmnist_test')
        WHERE metric = 'accuracy') > 0.6 AS distilled_above_floor,
       (SELECT value FROM nn_evaluate('fmnist_labels', 'SELECT img, label FROM fmnist_test')
        WHERE metric = 'accuracy') > 0.6 AS labels_above_floor;

-- transfer: convolutions trained on classes 0-4 (frozen), a new dense head
-- on 300 rows of classes 5-9
SELECT nn_create('fmnist_base', '[
  {"type": "rescale",   "scale": 0.00392156862745098},
  {"type": "reshape",   "shape": [28, 28, 1]},
  {"type": "conv2d",    "filters": 32, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d",    "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "conv2d",    "filters": 64, "kernel_size": 3, "activation": "relu"},
  {"type": "flatten"},
  {"type": "dense",     "units": 64, "activation": "relu"},
  {"type": "dense",     "units": 5, "activation": "softmax"}
]', input_shape => '{784}', seed => 42);
SELECT count(*) FROM nn_fit('fmnist_base', 'SELECT img, label FROM fmnist_train WHERE label < 5',
                            epochs => 2, batch_size => 64, seed => 1, verbose => false);
SELECT nn_create('fmnist_transfer', '[{"type": "dense", "units": 64, "activation": "relu"},
  {"type": "dense", "units": 5, "activation": "softmax"}]',
                 base => 'fmnist_base', base_layers => 8, seed => 2);
SELECT layer, type, trainable FROM nn_summary('fmnist_transfer') WHERE trainable IS NOT NULL;
SELECT count(*) FROM nn_fit('fmnist_transfer',
                            'SELECT img, label - 5 FROM fmnist_train WHERE label >= 5 ORDER BY id LIMIT 300',
                            epochs => 5, batch_size => 16, seed => 3, verbose => false);
SELECT value > 0.7 AS transfer_above_floor
FROM nn_evaluate('fmnist_transfer', 'SELECT img, label - 5 FROM fmnist_test WHERE label >= 5')
WHERE metric = 'accuracy';

SELECT nn_drop(m) FROM unnest(ARRAY['fmnist_cnn', 'fmnist_student', 'fmnist_labels',
                                    'fmnist_base', 'fmnist_transfer']) m;
DROP TABLE fmnist_train, fmnist_test;
