--
-- sequence: simple_rnn, lstm, gru, batchnorm, embedding and the global
-- pools on data made in SQL: Keras's parameter counts, an lstm classifier,
-- a gru and an lstm forecaster of a noisy seasonal series, an autoencoder
-- whose reconstruction error flags outliers, token ids from integer[] and
-- bigint[], and each bad input with its error
--
SET nnpg.threads = 1;
SET search_path = public;

-- parameter counts as Keras's model.summary() reports them
SELECT nn_create('seq_shapes', '[
  {"type": "embedding", "input_dim": 50, "output_dim": 8},
  {"type": "lstm", "units": 16, "return_sequences": true},
  {"type": "gru", "units": 12, "return_sequences": true},
  {"type": "simple_rnn", "units": 7, "return_sequences": true},
  {"type": "batchnorm"},
  {"type": "global_maxpool"},
  {"type": "dense", "units": 3, "activation": "softmax"}
]', '{10}', 1);
SELECT * FROM nn_summary('seq_shapes');
SELECT nn_create('seq_shapes2', '[
  {"type": "reshape", "shape": [6, 5]},
  {"type": "lstm", "units": 4, "use_bias": false},
  {"type": "batchnorm", "momentum": 0.9, "epsilon": 0.01},
  {"type": "reshape", "shape": [2, 2, 1]},
  {"type": "global_avgpool"}
]', '{30}', 1);
SELECT * FROM nn_summary('seq_shapes2');

-- an lstm classifier: slow (class 0) or fast (class 1) noisy waves of 12
-- steps with a random phase, 2 features per step (the wave and its square)
CREATE TABLE waves AS
SELECT i AS id, i % 2 AS label,
       (SELECT array_agg(v ORDER BY t, f)
        FROM (SELECT t, f, CASE f WHEN 0 THEN s ELSE s * s END AS v
              FROM (SELECT t, sin((CASE i % 2 WHEN 0 THEN 0.35 ELSE 1.3 END) * t
                                  + rnd(i, 1) * 6.28) + (rnd(i, 100 + t) - 0.5) * 0.3 AS s
                    FROM generate_series(0, 11) t) w,
                   generate_series(0, 1) f) q)::real[] AS x
FROM generate_series(1, 240) i;
SELECT nn_create('wave_lstm', '[
  {"type": "reshape", "shape": [12, 2]},
  {"type": "lstm", "units": 8},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', seed => 5);
SELECT epoch, accuracy > 0.9 AS good, val_accuracy > 0.85 AS val_good
FROM nn_fit('wave_lstm', 'SELECT x, label FROM waves ORDER BY id', epochs => 25,
            batch_size => 16, learning_rate => 0.02, validation_split => 0.25,
            seed => 1, verbose => false)
WHERE epoch = 25;
SELECT metric, value >= 0.9 AS good FROM nn_evaluate('wave_lstm', 'SELECT x, label FROM waves')
WHERE metric = 'accuracy';

-- Fashion-MNIST images read as 28 timesteps of 28 features (real[] rows,
-- scaled to [0, 1]): 3,000 training rows for three epochs reach about 0.74
-- on 3,000 test rows (all 60,000 rows, 128 units and five epochs: 0.886)
\setenv PGDATABASE :DBNAME
\! /usr/bin/python3 scripts/load_fashion.py --limit 3000 --layouts real --jobs 1 --prefix fseq > /dev/null
SELECT count(*), count(DISTINCT label) AS classes, min(array_length(pixels, 1)),
       max(array_length(pixels, 1))
FROM fseq_train_real;
SELECT nn_create('fseq_lstm', '[
  {"type": "reshape", "shape": [28, 28]},
  {"type": "lstm", "units": 64},
  {"type": "dense", "units": 10, "activation": "softmax"}
]', seed => 42);
SELECT * FROM nn_summary('fseq_lstm');
SELECT epoch, loss < 2.0 AS loss_below_chance, accuracy > 0.4 AS learned
FROM nn_fit('fseq_lstm', 'SELECT pixels, label FROM fseq_train_real', epochs => 3,
            batch_size => 32, learning_rate => 0.002, seed => 1, verbose => false);
SELECT metric, value > 0.65 AS above_floor
FROM nn_evaluate('fseq_lstm', 'SELECT pixels, label FROM fseq_test_real')
WHERE metric IN ('accuracy', 'f1');
SELECT count(*) AS rows,
       count(*) FILTER (WHERE p.class <> nn_classify('fseq_lstm', t.pixels)) AS disagree
FROM fseq_test_real t
JOIN nn_predict_batch('fseq_lstm', 'SELECT id, pixels FROM fseq_test_real WHERE id <= 500') p
  ON p.id = t.id;
SELECT nn_drop('fseq_lstm');
DROP TABLE fseq_train_real, fseq_test_real;

-- forecasting the next value of a noisy seasonal series from the last 10
CREATE TABLE series AS
SELECT t, sin(2 * pi() * t / 16) + 0.5 * sin(2 * pi() * t / 40)
          + (rnd(t, 7) - 0.5) * 0.1 AS v
FROM generate_series(0, 409) t;
CREATE TABLE windows AS
SELECT s.t, (SELECT array_agg(p.v ORDER BY p.t) FROM series p
             WHERE p.t BETWEEN s.t - 10 AND s.t - 1)::real[] AS x, s.v AS y
FROM series s WHERE s.t >= 10;
SELECT nn_create('series_gru', '[
  {"type": "reshape", "shape": [10, 1]},
  {"type": "gru", "units": 12},
  {"type": "dense", "units": 1}
]', seed => 2);
SELECT nn_create('series_lstm', '[
  {"type": "reshape", "shape": [10, 1]},
  {"type": "lstm", "units": 8, "return_sequences": true},
  {"type": "lstm", "units": 8},
  {"type": "dense", "units": 1}
]', seed => 2);
SELECT count(*) AS epochs FROM nn_fit('series_gru', 'SELECT x, y FROM windows WHERE t < 330 ORDER BY t',
                                      epochs => 30, batch_size => 16, learning_rate => 0.01,
                                      seed => 1, verbose => false);
SELECT count(*) AS epochs FROM nn_fit('series_lstm', 'SELECT x, y FROM windows WHERE t < 330 ORDER BY t',
                                      epochs => 30, batch_size => 16, learning_rate => 0.01,
                                      seed => 1, verbose => false);
-- held-out rmse well under the naive forecast (the previous value)
SELECT m.name, e.value < 0.12 AS good,
       e.value < 0.5 * (SELECT sqrt(avg((x[10] - y) ^ 2)) FROM windows WHERE t >= 330) AS beats_naive
FROM (VALUES ('series_gru'), ('series_lstm')) m(name),
     LATERAL nn_evaluate(m.name, 'SELECT x, y FROM windows WHERE t >= 330') e
WHERE e.metric = 'rmse';
SELECT abs((nn_predict('series_gru', x))[1] - y) < 0.3 AS close FROM windows WHERE t = 400;

-- an autoencoder on 8 features that lie near a 2-dimensional plane; rows
-- 13, 77, 150 and 201 are replaced by outliers off the plane
CREATE TABLE points AS
SELECT i AS id,
       CASE WHEN i IN (13, 77, 150, 201)
            THEN ARRAY(SELECT (rnd(i, 50 + k) - 0.5) * 4 FROM generate_series(1, 8) k)
            ELSE ARRAY(SELECT a * cos(k) + b * sin(k) + (rnd(i, 30 + k) - 0.5) * 0.05
                       FROM generate_series(1, 8) k)
       END::real[] AS x
FROM (SELECT i, rnd(i, 1) * 2 - 1 AS a, rnd(i, 2) * 2 - 1 AS b
      FROM generate_series(1, 240) i) p;
SELECT nn_create('points_ae', '[
  {"type": "dense", "units": 6, "activation": "tanh"},
  {"type": "batchnorm"},
  {"type": "dense", "units": 2},
  {"type": "dense", "units": 6, "activation": "tanh"},
  {"type": "dense", "units": 8}
]', seed => 3);
SELECT count(*) AS epochs FROM nn_fit('points_ae', 'SELECT x, x FROM points ORDER BY id',
                                      epochs => 40, batch_size => 16, learning_rate => 0.01,
                                      seed => 1, verbose => false);
-- the four largest reconstruction errors are the outliers
WITH err AS (
  SELECT id, (SELECT sum((p - v) ^ 2) FROM unnest(nn_predict('points_ae', x), x) AS u(p, v)) AS e
  FROM points
)
SELECT id FROM (SELECT id FROM err ORDER BY e DESC LIMIT 4) top ORDER BY id;
WITH err AS (
  SELECT id, (SELECT sum((p - v) ^ 2) FROM unnest(nn_predict('points_ae', x), x) AS u(p, v)) AS e
  FROM points
)
SELECT min(e) FILTER (WHERE id IN (13, 77, 150, 201)) >
       5 * max(e) FILTER (WHERE id NOT IN (13, 77, 150, 201)) AS separated
FROM err;

-- token ids: class 1 when token 3 occurs in the 6 ids (integer[] and bigint[])
CREATE TABLE docs AS
SELECT i AS id,
       ARRAY(SELECT CASE WHEN i % 2 = 1 AND k = 1 + i % 6 THEN 3
                         ELSE (array[0, 1, 2, 4, 5, 6, 7, 8, 9])[1 + floor(rnd(i, k) * 9)::int] END
             FROM generate_series(1, 6) k) AS ids,
       i % 2 AS label
FROM generate_series(1, 200) i;
SELECT nn_create('docs_emb', '[
  {"type": "embedding", "input_dim": 10, "output_dim": 4},
  {"type": "global_maxpool"},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', seed => 4);
SELECT epoch, accuracy > 0.95 AS good
FROM nn_fit('docs_emb', 'SELECT ids, label FROM docs ORDER BY id', epochs => 20, batch_size => 10,
            learning_rate => 0.05, seed => 1, verbose => false)
WHERE epoch = 20;
SELECT nn_create('docs_emb64', '[
  {"type": "embedding", "input_dim": 10, "output_dim": 4},
  {"type": "lstm", "units": 4},
  {"type": "dense", "units": 2, "activation": "softmax"}
]', seed => 4);
SELECT count(*) AS epochs FROM nn_fit('docs_emb64', 'SELECT ids::bigint[], label FROM docs ORDER BY id',
                                      epochs => 2, batch_size => 10, seed => 1, verbose => false);
SELECT nn_classify('docs_emb', '{3, 0, 0, 0, 0, 0}'::real[]) AS with_3,
       nn_classify('docs_emb', '{1, 2, 4, 5, 6, 7}'::real[]) AS without_3;

-- model bytes: version 2 with the new layers, still version 1 without them,
-- and a round trip through export and import
SELECT nn_create('plain_dense', '[{"type": "dense", "units": 2}]', '{3}', 1);
SELECT get_byte(nn_export('wave_lstm'), 8) AS format_version,
       get_byte(nn_export('plain_dense'), 8) AS format_version_old_layers;
SELECT nn_import('wave_lstm_copy', nn_export('wave_lstm'));
SELECT nn_predict('wave_lstm_copy', x) = nn_predict('wave_lstm', x) AS same FROM waves WHERE id = 3;

-- bad specs
SELECT err($$SELECT nn_create('bad', '[{"type": "lstm", "units": 0}]', '{4, 3}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "lstm"}]', '{4, 3}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "lstm", "units": 4}]', '{12}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "gru", "units": 4, "return_sequences": 1}]', '{4, 3}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "simple_rnn", "units": 4, "recurrent_activation": "sigmoid"}]', '{4, 3}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "lstm", "units": 4, "recurrent_activation": "swish"}]', '{4, 3}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "lstm", "units": 4, "activation": "softmax"}]', '{4, 3}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "gru", "units": 4, "return_sequences": true}, {"type": "dense", "units": 1}]', '{4, 3}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "embedding", "input_dim": 10}]', '{4}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "embedding", "input_dim": 0, "output_dim": 2}]', '{4}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "dense", "units": 4}, {"type": "embedding", "input_dim": 10, "output_dim": 2}]', '{4}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "embedding", "input_dim": 10, "output_dim": 2}]', '{2, 2}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "batchnorm", "momentum": 1.5}]', '{4}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "batchnorm", "epsilon": 0}]', '{4}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "global_avgpool"}]', '{4}')$$);
SELECT err($$SELECT nn_create('bad', '[{"type": "global_maxpool", "pool_size": 2}]', '{4, 3}')$$);

-- bad token ids
SELECT err($$SELECT nn_predict('docs_emb', '{3, 0, 0, 0, 0, 10}'::real[])$$);
SELECT err($$SELECT nn_predict('docs_emb', '{3, 0, 0, -1, 0, 0}'::real[])$$);
SELECT err($$SELECT nn_predict('docs_emb', '{3, 0, 0, 2.5, 0, 0}'::real[])$$);
SELECT err($$SELECT nn_predict('docs_emb', '{3, 0, 0}'::real[])$$);
-- the error names the query row of the bad id, whatever the shuffle
SELECT err($$SELECT * FROM nn_fit('docs_emb', 'SELECT CASE WHEN id = 137 THEN ids[1:5] || 12 ELSE ids END, label FROM docs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('docs_emb', 'SELECT ARRAY[1, 2, 3, 4, 5, 10]::bigint[], 1')$$);

SELECT nn_drop(name) FROM (VALUES ('seq_shapes'), ('seq_shapes2'), ('wave_lstm'),
  ('wave_lstm_copy'), ('series_gru'), ('series_lstm'), ('points_ae'), ('docs_emb'),
  ('docs_emb64'), ('plain_dense')) m(name);
DROP TABLE waves, series, windows, points, docs;
