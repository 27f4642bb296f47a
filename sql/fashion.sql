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

SELECT nn_drop('fmnist_cnn');
DROP TABLE fmnist_train, fmnist_test;
