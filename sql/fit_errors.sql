--
-- fit_errors: each bad input gets its own error, naming the row, column or
-- option, with a fitting SQLSTATE; and a failed fit stores nothing
--
SET nnpg.threads = 1;
SET search_path = public;
SELECT max(version) AS before FROM nnpg.models WHERE name = 'blob_net' \gset

-- arguments
SELECT err($$SELECT * FROM nn_fit('no_such_model', 'SELECT x, y FROM blobs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', version => 99)$$);
SELECT err($$SELECT * FROM nn_fit(NULL, 'SELECT x, y FROM blobs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', NULL)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', epochs => NULL)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => NULL)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', epochs => 0)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', batch_size => 0)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', learning_rate => 0)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', learning_rate => 'NaN')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', validation_split => 1)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', validation_split => 0.2, validation_query => 'SELECT x, y FROM blobs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', early_stopping_patience => -1)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', optimizer => 'lbfgs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', loss => 'hinge')$$);

-- options
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '[]')$$);
SELECT nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"momentun": 0.9}');
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"momentum": "high"}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"on_null": "ignore"}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"reset": 1}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"lr_schedule": "cosine"}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"lr_schedule": "step"}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"decay_steps": 0.5}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"plateau_factor": 2}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"class_weight": [1, -2]}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"class_weight": {"one": 2}}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', options => '{"class_weight": [1, 1, 1]}')$$);
SELECT err($$SELECT * FROM nn_fit('loss_mse', 'SELECT x, y::float8 FROM blobs', options => '{"class_weight": [1, 2]}')$$);

-- the query
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELEC x, y FROM blobs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM no_such_table')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'DELETE FROM blobs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs; SELECT 1')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT y FROM blobs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x::text, y FROM blobs')$$);
SELECT nn_fit('blob_net', 'SELECT x, y::text AS label FROM blobs');
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs WHERE false')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT NULL::real[], y FROM blobs', options => '{"on_null": "skip"}')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs LIMIT 1', validation_split => 0.5)$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', validation_query => 'SELECT x, y FROM blobs WHERE false')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', validation_query => 'SELECT x, x FROM blobs')$$);

-- rows: wrong length, ragged columns, NULLs, NaN and infinity
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT CASE WHEN id = 17 THEN x || 0::real ELSE x END, y FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x[1:1], y FROM blobs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT CASE WHEN id = 5 THEN x ELSE x[1:1] END, CASE WHEN id = 5 THEN ARRAY[]::real[] ELSE x[2:2] END, y FROM blobs ORDER BY id')$$);
SELECT nn_fit('blob_net', 'SELECT CASE WHEN id = 3 THEN NULL ELSE x END AS features, y FROM blobs ORDER BY id');
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT CASE WHEN id = 4 THEN ARRAY[1, NULL]::real[] ELSE x END AS features, y FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, CASE WHEN id = 6 THEN NULL ELSE y END AS label FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT CASE WHEN id = 8 THEN ARRAY[1, ''NaN'']::real[] ELSE x END AS features, y FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT CASE WHEN id = 9 THEN ARRAY[''-Infinity'', 1]::float8[] ELSE x END AS features, y FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x[1] AS a, CASE WHEN id = 2 THEN ''NaN''::numeric ELSE x[2] END AS b, y FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT CASE WHEN id = 10 THEN ARRAY[1e300, 1]::float8[] ELSE x END AS features, y FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('loss_mse', 'SELECT x, CASE WHEN id = 11 THEN ''Infinity''::float8 ELSE y END AS target FROM blobs ORDER BY id')$$);

-- targets: class index out of range or not whole, wrong kind or length
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, CASE WHEN id = 5 THEN 12 ELSE y END FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, CASE WHEN id = 5 THEN -1 ELSE y END FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y + 0.5 FROM blobs ORDER BY id')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, x FROM blobs', loss => 'sparse_categorical_crossentropy')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, ARRAY[1, 0, 0]::real[] FROM blobs')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', loss => 'mse')$$);
SELECT err($$SELECT * FROM nn_fit('blob_net', 'SELECT x, y FROM blobs', loss => 'categorical_crossentropy')$$);
SELECT err($$SELECT * FROM nn_fit('loss_binary_crossentropy', 'SELECT x, y * 2 FROM blobs ORDER BY id')$$);

-- training that diverges stops with an error rather than storing NaNs
SELECT err($$SELECT * FROM nn_fit('loss_mse', 'SELECT x, y * 1e30 FROM blobs', optimizer => 'sgd', learning_rate => 1e10, verbose => false)$$) ~ '^22P01: ' AS diverged;

-- none of it stored a version
SELECT max(version) = :before AS nothing_stored FROM nnpg.models WHERE name = 'blob_net';
