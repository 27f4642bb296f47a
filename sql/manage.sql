--
-- manage: nn_summary, nn_history, nn_models, nn_drop, nn_export/nn_import
--
SET nnpg.threads = 1;
SET search_path = public;

-- summary
SELECT * FROM nn_summary('clf');
SELECT * FROM nn_summary('clf', 1);
SELECT err($$SELECT * FROM nn_summary('nope')$$);
SELECT err($$SELECT * FROM nn_summary(NULL)$$);

-- history: every version's epochs, or one version's
SELECT version, epoch, loss > 0 AS has_loss, accuracy IS NOT NULL AS has_accuracy,
       val_loss, seconds >= 0 AS timed
FROM nn_history('clf');
SELECT version, epoch FROM nn_history('blob_net', 4);
SELECT version, count(*) FROM nn_history('blob_net') GROUP BY version ORDER BY version LIMIT 4;
SELECT count(*) FROM nn_history('blob_net', 1);
SELECT err($$SELECT * FROM nn_history('nope')$$);
SELECT err($$SELECT * FROM nn_history('clf', 9)$$);

-- the catalog view
SELECT name, version, params, size_bytes > 0 AS sized, metrics ? 'loss' AS has_metrics
FROM nn_models WHERE name IN ('clf', 'reg_net') ORDER BY name, version;

-- export and import: the same predictions, from the same bytes
SELECT nn_import('clf_copy', nn_export('clf'));
SELECT nn_predict('clf_copy', x) = nn_predict('clf', x) AS same
FROM blobs WHERE id IN (1, 2, 3);
SELECT nn_export('clf_copy') = nn_export('clf') AS same_bytes;
SELECT layers FROM nnpg.models WHERE name = 'clf_copy';
SELECT training FROM nnpg.models WHERE name = 'clf_copy';
SELECT * FROM nn_summary('clf_copy');
-- the rebuilt layers are a valid spec
SELECT nn_create('clf_rebuilt', layers, '{2}', 1) FROM nnpg.models WHERE name = 'clf_copy';
-- importing a name that exists adds a version; a given version must be free
SELECT nn_import('clf_copy', nn_export('clf', 1));
SELECT nn_import('clf_copy', nn_export('clf', 1), 10);
SELECT err($$SELECT nn_import('clf_copy', nn_export('clf'), 10)$$);
SELECT version FROM nn_models WHERE name = 'clf_copy' ORDER BY version;
-- an imported model trains on, with its optimizer state
SELECT count(*) FROM nn_fit('clf_copy', 'SELECT x, y FROM blobs', epochs => 1, seed => 1,
                            verbose => false, version => 1);
-- the other layer kinds survive the round trip
SELECT nn_create('kinds', '[{"type": "reshape", "shape": [4, 4, 1]},
  {"type": "rescale", "scale": 0.5, "offset": -1},
  {"type": "conv2d", "filters": 2, "kernel_size": [2, 3], "strides": [1, 2], "padding": "same",
   "activation": "leaky_relu", "l2": 0.01},
  {"type": "maxpool2d", "pool_size": 2},
  {"type": "avgpool2d", "pool_size": [1, 1], "strides": 1},
  {"type": "flatten"}, {"type": "dropout", "rate": 0.25},
  {"type": "normalize"},
  {"type": "dense", "units": 3, "activation": "elu", "alpha": 0.5, "use_bias": false, "l1": 0.001},
  {"type": "activation", "activation": "softmax"}]', '{16}', 3);
SELECT nn_import('kinds_copy', nn_export('kinds'));
SELECT layers FROM nnpg.models WHERE name = 'kinds_copy';
SELECT (SELECT array_agg(s ORDER BY layer) FROM nn_summary('kinds') s)::text
     = (SELECT array_agg(s ORDER BY layer) FROM nn_summary('kinds_copy') s)::text AS same_summary;

-- bad bytes are rejected before anything is stored: XX001 or 22P03
SELECT err($$SELECT nn_import('bad', '\x')$$) ~ '^(XX001|22P03): ' AS empty;
SELECT err($$SELECT nn_import('bad', 'not a model at all'::bytea)$$) ~ '^(XX001|22P03): ' AS garbage;
SELECT err($$SELECT nn_import('bad', substring(nn_export('clf') from 1 for 40))$$) ~ '^(XX001|22P03): ' AS truncated;
SELECT err($$SELECT nn_import('bad', nn_export('clf') || '\x00'::bytea)$$) ~ '^(XX001|22P03): ' AS trailing;
SELECT err($$SELECT nn_import('bad', set_byte(nn_export('clf'), 0, 0))$$) ~ '^(XX001|22P03): ' AS bad_magic;
SELECT err(format('SELECT nn_import(%L, set_byte(nn_export(%L), %s, get_byte(nn_export(%L), %s) # 1))',
                  'bad', 'clf', n / 2, 'clf', n / 2)) ~ '^(XX001|22P03): ' AS flipped_bit
FROM (SELECT length(nn_export('clf')) AS n) s;
SELECT err(format('SELECT nn_import(%L, set_byte(nn_export(%L), %s, get_byte(nn_export(%L), %s) # 128))',
                  'bad', 'clf', n - 1, 'clf', n - 1)) ~ '^(XX001|22P03): ' AS flipped_last
FROM (SELECT length(nn_export('clf')) AS n) s;
SELECT count(*) FROM nnpg.models WHERE name = 'bad';
SELECT err($$SELECT nn_import('', nn_export('clf'))$$);
SELECT err($$SELECT nn_import('x', NULL)$$);
-- rows written by hand are checked on load as well
UPDATE nnpg.models SET weights = substring(weights from 1 for 100) WHERE name = 'clf_rebuilt';
SELECT err($$SELECT nn_predict('clf_rebuilt', '{1, 2}'::real[])$$) ~ '^(XX001|22P03): ' AS checked_on_load;

-- nn_drop: one version, or all; unknown names and versions are 42704
SELECT nn_drop('clf_copy', 10);
SELECT nn_drop('clf_copy');
SELECT err($$SELECT nn_drop('clf_copy')$$);
SELECT err($$SELECT nn_drop('clf', 99)$$);
SELECT err($$SELECT nn_drop(NULL)$$);
SELECT nn_drop('clf_rebuilt'), nn_drop('kinds'), nn_drop('kinds_copy');
SELECT count(*) FROM nn_models WHERE name LIKE 'clf%';
