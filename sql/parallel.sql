--
-- parallel: data-parallel nn_fit (options workers and sync_rows), the
-- nnpg.nn_train aggregate and its state type nnpg.nn_replica
--
SET nnpg.threads = 1;
SET search_path = public;

-- two blobs in 8 dimensions, 3000 rows: enough for several rounds
CREATE TABLE pblobs AS
SELECT i AS id,
       ARRAY(SELECT ((2 * (i % 2) - 1) * 1.2 + (rnd(i, k) - 0.5) * 2)::real
             FROM generate_series(1, 8) k) AS x,
       i % 2 AS y
FROM generate_series(1, 3000) i;
ANALYZE pblobs;

CREATE FUNCTION pnet(name text, seed int) RETURNS int LANGUAGE sql AS $$
  SELECT nn_create(name, '[{"type": "dense", "units": 16, "activation": "relu"},
                           {"type": "dense", "units": 2, "activation": "softmax"}]',
                   '{8}', seed)
$$;

-- two workers, two replicas merged every 1024 rows: three rounds an epoch
SELECT pnet('par', 1);
SELECT epoch, loss < 0.3 AS learned, accuracy > 0.95 AS accurate
FROM nn_fit('par', 'SELECT x, y FROM pblobs', epochs => 3, batch_size => 32,
            learning_rate => 0.01, seed => 1,
            options => '{"workers": 2, "sync_rows": 1024}', verbose => false)
ORDER BY epoch;
SELECT training->'parallel'->>'workers' AS workers,
       training->'parallel'->>'replicas' AS replicas,
       training->'parallel'->>'rounds_per_epoch' AS rounds,
       training->'parallel'->>'rounds_run' AS rounds_run,
       training->>'rows' AS rows, jsonb_array_length(history) AS epochs,
       (training->'parallel'->>'replica_seconds')::float8
         <= (training->'parallel'->>'round_seconds')::float8 AS times_add_up
FROM nnpg.models WHERE name = 'par' AND version = 2;
SELECT value > 0.95 AS test_accuracy
FROM nn_evaluate('par', 'SELECT x, y FROM pblobs') WHERE metric = 'accuracy';

-- one replica, rows in order: the aggregate trains exactly as one backend.
-- An epoch of nn_fit, then one more by nn_fit and one by hand: a single
-- (serial) run of nnpg.nn_train over the same rows from the same version
CREATE TABLE psettings AS SELECT '{"evaluate": false, "batch_size": 32, "epoch": 2,
  "round": 0, "rounds": 1, "round_id": 1, "seed": 3, "validation_split": 0,
  "validation_rows": false, "skip_nulls": false, "shuffle": false, "threads": 1,
  "buffer_rows": 4096, "temperature": 4, "distill_alpha": 0.1}'::jsonb AS s;
SELECT pnet('one_backend', 7);
SELECT count(*) FROM nn_fit('one_backend', 'SELECT x, y FROM pblobs ORDER BY id', epochs => 1,
                            shuffle => false, seed => 3, verbose => false);
CREATE TABLE pround AS
SELECT nnpg.nn_train(m.weights, NULL, s, ROW(p.x, p.y) ORDER BY p.id) AS r
FROM pblobs p, psettings,
     (SELECT weights FROM nnpg.models WHERE name = 'one_backend' AND version = 2) m;
SELECT count(*) FROM nn_fit('one_backend', 'SELECT x, y FROM pblobs ORDER BY id', epochs => 1,
                            shuffle => false, seed => 3, verbose => false);
SELECT nnpg.nn_replica_model(r) = (SELECT weights FROM nnpg.models
                                   WHERE name = 'one_backend' AND version = 3) AS same_bytes
FROM pround;
SELECT nn_import('by_hand', nnpg.nn_replica_model(r)) FROM pround;
SELECT count(*) FILTER (WHERE nn_predict('one_backend', x) <> nn_predict('by_hand', x))
         AS predictions_differ
FROM pblobs;
-- the replica's text form reads back as the same value
SELECT length(r::text) > 1000 AS has_model, (r::text)::nnpg.nn_replica::text = r::text AS round_trip,
       nnpg.nn_replica_wants(1) AS wants_round_1, nnpg.nn_replica_wants(2) AS wants_round_2
FROM pround;

-- nnpg.nn_round_has: every row is in exactly one of an epoch's 3 rounds,
-- in a new partition each epoch; validation rows are the same in every
-- epoch and in no training round
CREATE FUNCTION round_of(q pblobs, epoch int, split float8) RETURNS int
LANGUAGE sql AS $$
  SELECT CASE WHEN count(*) = 1 THEN min(r) END
  FROM generate_series(0, 2) r, psettings
  WHERE nnpg.nn_round_has(s || jsonb_build_object('rounds', 3, 'round', r,
                          'epoch', epoch, 'validation_split', split), q)
$$;
CREATE FUNCTION is_val(q pblobs, epoch int) RETURNS boolean LANGUAGE sql AS $$
  SELECT nnpg.nn_round_has(s || jsonb_build_object('epoch', epoch, 'evaluate', true,
                           'validation_rows', true, 'validation_split', 0.2), q)
  FROM psettings
$$;
SELECT count(*) AS rows,
       count(round_of(q, 1, 0)) AS in_one_round,
       count(*) FILTER (WHERE round_of(q, 1, 0) = 0) BETWEEN 900 AND 1100 AS a_third,
       count(*) FILTER (WHERE round_of(q, 1, 0) <> round_of(q, 2, 0)) > 1500
         AS repartitioned,
       count(*) FILTER (WHERE is_val(q, 1)) BETWEEN 500 AND 700 AS a_fifth,
       count(*) FILTER (WHERE is_val(q, 1) = is_val(q, 2)) AS same_every_epoch,
       count(*) FILTER (WHERE is_val(q, 1) = (round_of(q, 1, 0.2) IS NOT NULL))
         AS validation_and_training
FROM pblobs q;

-- workers => 1 is one backend: a lone worker trains what the backend would
SELECT count(*) FROM nn_fit('one_backend', 'SELECT x, y FROM pblobs', epochs => 1,
                            options => '{"workers": 1}', verbose => false);
SELECT training ? 'parallel' AS parallel FROM nnpg.models
WHERE name = 'one_backend' AND version = 4;

-- validation_split takes a hashed fifth of the rows; validation_query all
-- of its rows; both are evaluated by replicas
SELECT pnet('pval', 2);
SELECT epoch, val_loss IS NOT NULL AS has_val_loss, val_accuracy > 0.9 AS val_ok
FROM nn_fit('pval', 'SELECT x, y FROM pblobs', epochs => 2, validation_split => 0.2,
            seed => 1, options => '{"workers": 2}', verbose => false)
ORDER BY epoch;
SELECT (training->>'validation_rows')::int BETWEEN 500 AND 700 AS fifth,
       (training->>'rows')::int + (training->>'validation_rows')::int AS all_rows
FROM nnpg.models WHERE name = 'pval' AND version = 2;
SELECT count(*), min(val_loss) > 0 AS val
FROM nn_fit('pval', 'SELECT x, y FROM pblobs WHERE id <= 2000',
            validation_query => 'SELECT x, y FROM pblobs WHERE id > 2000',
            epochs => 1, seed => 1, options => '{"workers": 2}', verbose => false);
SELECT training->>'validation_rows' AS validation_rows FROM nnpg.models
WHERE name = 'pval' AND version = 3;

-- a query the planner cannot run in parallel: a NOTICE, then one backend
CREATE FUNCTION serial_only(int) RETURNS int LANGUAGE sql PARALLEL UNSAFE AS 'SELECT $1';
SELECT count(*) FROM nn_fit('pval', 'SELECT x, serial_only(y) FROM pblobs',
                            epochs => 1, options => '{"workers": 2}', verbose => false);
SELECT training ? 'parallel' AS parallel FROM nnpg.models
WHERE name = 'pval' AND version = 4;

-- bad options: nothing is trained or stored
SELECT err($$SELECT * FROM nn_fit('pval', 'SELECT x, y FROM pblobs', options => '{"workers": -1}')$$);
SELECT err($$SELECT * FROM nn_fit('pval', 'SELECT x, y FROM pblobs', options => '{"workers": 3}')$$);
SELECT err($$SELECT * FROM nn_fit('pval', 'SELECT x, y FROM pblobs', options => '{"workers": 1.5}')$$);
SELECT err($$SELECT * FROM nn_fit('pval', 'SELECT x, y FROM pblobs', batch_size => 64, options => '{"workers": 2, "sync_rows": 63}')$$);
SELECT err($$SELECT * FROM nn_fit('pval', 'SELECT x, y FROM pblobs', options => '{"sync_rows": 5000}')$$);

-- a bad row met by a parallel worker: its error and SQLSTATE reach the
-- caller, with the failing row; nothing is stored
CREATE TABLE pbad AS SELECT * FROM pblobs;
UPDATE pbad SET x = NULL WHERE id = 2500;
SELECT regexp_replace(err($$SELECT * FROM nn_fit('pval', 'SELECT x, y FROM pbad', options => '{"workers": 2}')$$),
                      'row \d+', 'row N');
UPDATE pbad SET x = ARRAY[1, 2, 3, 4, 'NaN', 6, 7, 8]::real[] WHERE id = 2500;
SELECT regexp_replace(err($$SELECT * FROM nn_fit('pval', 'SELECT x, y FROM pbad', options => '{"workers": 2}')$$),
                      'row \d+', 'row N');
DO $$
BEGIN
  PERFORM * FROM nn_fit('pval', 'SELECT x, y FROM pbad', options => '{"workers": 2}');
EXCEPTION WHEN OTHERS THEN
  DECLARE ctx text;
  BEGIN
    GET STACKED DIAGNOSTICS ctx = PG_EXCEPTION_CONTEXT;
    RAISE NOTICE 'context names the row: %, the round: %',
      ctx LIKE '%row ("{1,2,3,4,NaN,6,7,8}",0) of this replica''s share%',
      ctx LIKE '%training a replica of the model in round 1 of 1 of epoch 1%';
  END;
END $$;
-- with on_null skip, the NULL row is skipped by the worker that meets it
UPDATE pbad SET x = NULL WHERE id = 2500;
SELECT count(*) FROM nn_fit('pval', 'SELECT x, y FROM pbad', epochs => 1,
                            options => '{"workers": 2, "on_null": "skip"}', verbose => false);
SELECT training->>'rows' AS rows FROM nnpg.models WHERE name = 'pval' AND version = 5;
SELECT max(version) AS versions FROM nnpg.models WHERE name = 'pval';

-- the aggregate and its state type on their own
SELECT err($$SELECT nnpg.nn_replica_step(NULL, NULL, NULL, '{}', NULL)$$);
SELECT err($$SELECT nnpg.nn_train(NULL, NULL, '{}', ROW(x, y)) FROM pblobs$$);
SELECT err($$SELECT nnpg.nn_train(NULL, NULL, s || '{"round_id": 99}', q) FROM pblobs q, psettings$$);
SELECT err($$SELECT 'not base64!'::nnpg.nn_replica$$);
SELECT err($$SELECT 'AAAA'::nnpg.nn_replica$$);
SELECT nnpg.nn_replica_wants(123456789) AS wants_unknown_round;

-- tables of the state type would keep the extension from being dropped
DROP TABLE pround, psettings;
