--
-- cache: the per-backend model cache within nnpg.model_cache_mb.  Models
-- evicted and loaded again answer exactly as before; the cache keeps the
-- model in use and, within the budget, the most recently used others.
--
SET nnpg.threads = 1;
SET search_path = public;
SET nnpg.model_cache_mb = 256;

-- what this backend has cached: one memory context per model
CREATE FUNCTION cache_models() RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FROM pg_backend_memory_contexts
    WHERE name = 'nnpg cached model'
$$;
CREATE FUNCTION cache_within(mb int) RETURNS boolean
LANGUAGE sql AS $$
    SELECT coalesce(sum(total_bytes), 0) <= mb * 1024 * 1024
    FROM pg_backend_memory_contexts WHERE name = 'nnpg cached model'
$$;
-- model loads: a load reads the out-of-line bytes through the TOAST
-- index of nnpg.models, a cache hit does not (all test models are large
-- enough to be stored out of line); counts of this transaction only
CREATE FUNCTION cache_reads() RETURNS bigint
LANGUAGE sql AS $$
    SELECT pg_stat_get_xact_numscans(i.indexrelid)
    FROM pg_class c JOIN pg_index i ON i.indrelid = c.reltoastrelid
    WHERE c.oid = 'nnpg.models'::regclass
$$;

-- values in the TOAST table of nnpg.models
CREATE FUNCTION cache_toasted() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SELECT count(DISTINCT chunk_id) FROM %s',
                   (SELECT reltoastrelid::regclass FROM pg_class
                    WHERE oid = 'nnpg.models'::regclass)) INTO n;
    RETURN n;
END
$$;
SELECT cache_toasted() AS toasted \gset

CREATE TABLE cache_pts AS
SELECT i AS id, ARRAY[rnd(i, 1), rnd(i, 2), rnd(i, 3), rnd(i, 4)]::real[] AS x,
       (rnd(i, 1) + rnd(i, 2) > rnd(i, 3) + rnd(i, 4))::int + (rnd(i, 1) > 0.5)::int AS y
FROM generate_series(1, 60) i;

SELECT nn_create('cache_a', '[{"type": "dense", "units": 128, "activation": "relu"},
                              {"type": "dense", "units": 3, "activation": "softmax"}]', '{4}', 1);
SELECT nn_create('cache_b', '[{"type": "dense", "units": 160, "activation": "tanh"},
                              {"type": "dense", "units": 3, "activation": "softmax"}]', '{4}', 2);
SELECT nn_create('cache_c', '[{"type": "dense", "units": 128, "activation": "relu"},
                              {"type": "dense", "units": 1}]', '{4}', 3);
SELECT count(*) FROM nn_fit('cache_a', 'SELECT x, y FROM cache_pts', epochs => 3,
                            batch_size => 16, seed => 1, verbose => false);
SELECT count(*) FROM nn_fit('cache_b', 'SELECT x, y FROM cache_pts', epochs => 3,
                            batch_size => 16, optimizer => 'momentum',
                            learning_rate => 0.05, seed => 2, verbose => false);
SELECT count(*) FROM nn_fit('cache_c', 'SELECT x, x[1] + x[2] FROM cache_pts', epochs => 3,
                            batch_size => 16, seed => 3, verbose => false);
-- every new version's bytes are out of line, so cache_reads() sees each load
SELECT count(*) AS versions, cache_toasted() - :toasted AS out_of_line
FROM nnpg.models WHERE name LIKE 'cache\_%';

-- reference answers with a generous cache: each model loaded once, kept
CREATE TABLE cache_ref AS
SELECT id, x, nn_predict('cache_a', x) AS pa, nn_predict('cache_b', x) AS pb,
       nn_predict('cache_c', x) AS pc, nn_predict('cache_a', x, 1) AS pa1,
       nn_classify('cache_a', x) AS ka, nn_classify('cache_b', x) AS kb
FROM cache_pts;
SELECT cache_models();
-- the answers tell the models apart, so a mix-up could not go unseen
SELECT count(*) AS rows, count(DISTINCT pa) AS pa, count(DISTINCT pb) AS pb,
       count(DISTINCT pc) AS pc, count(DISTINCT pa1) AS pa1,
       count(*) FILTER (WHERE pa = pb OR pa = pa1 OR pa = pc) AS same_as_other,
       count(*) FILTER (WHERE ka <> kb) > 0 AS classes_differ
FROM cache_ref;
CREATE TABLE cache_ref_batch AS
SELECT 'cache_a' AS model, * FROM nn_predict_batch('cache_a', 'SELECT id, x FROM cache_pts')
UNION ALL
SELECT 'cache_b', * FROM nn_predict_batch('cache_b', 'SELECT id, x FROM cache_pts')
UNION ALL
SELECT 'cache_c', * FROM nn_predict_batch('cache_c', 'SELECT id, x FROM cache_pts');

-- with no budget only the model in use stays, from the next look-up on
SET nnpg.model_cache_mb = 0;
BEGIN;
SELECT cache_reads() AS r0 \gset
SELECT nn_predict('cache_a', x) = pa AS same FROM cache_ref WHERE id = 1;
SELECT cache_models(), cache_reads() - :r0 AS loads;

-- across statements: each model is loaded again, once per statement, and
-- answers as before
SELECT cache_reads() AS r0 \gset
SELECT bool_and(nn_predict('cache_b', x) = pb) AS same FROM cache_ref;
SELECT cache_models(), cache_reads() - :r0 AS loads;
SELECT cache_reads() AS r0 \gset
SELECT bool_and(nn_predict('cache_c', x) = pc) AS same FROM cache_ref;
SELECT cache_models(), cache_reads() - :r0 AS loads;
SELECT cache_reads() AS r0 \gset
SELECT bool_and(nn_predict('cache_a', x, 1) = pa1) AS same FROM cache_ref;
SELECT cache_models(), cache_reads() - :r0 AS loads;
SELECT cache_reads() AS r0 \gset
SELECT bool_and(nn_classify('cache_b', x) = kb) AS same FROM cache_ref;
SELECT cache_models(), cache_reads() - :r0 AS loads;

-- one call site whose model changes on every row (rows in id order):
-- every row but the first loads its model again
SELECT cache_reads() AS r0 \gset
SELECT count(*) AS rows,
       count(*) FILTER (WHERE nn_predict(CASE id % 3 WHEN 0 THEN 'cache_a'
                                                     WHEN 1 THEN 'cache_b'
                                                     ELSE 'cache_c' END, x)
                              = CASE id % 3 WHEN 0 THEN pa WHEN 1 THEN pb ELSE pc END) AS same
FROM (SELECT * FROM cache_ref ORDER BY id OFFSET 0) r;
SELECT cache_models(), cache_reads() - :r0 AS loads;
-- the version alone changes: again every row but the first loads
SELECT cache_reads() AS r0 \gset
SELECT count(*) AS rows,
       count(*) FILTER (WHERE nn_predict('cache_a', x, CASE WHEN id % 2 = 0 THEN 1 END)
                              = CASE WHEN id % 2 = 0 THEN pa1 ELSE pa END) AS same
FROM (SELECT * FROM cache_ref ORDER BY id OFFSET 0) r;
SELECT cache_models(), cache_reads() - :r0 AS loads;
-- classes, changing model every other row; the first row's model is not
-- the one left cached, so every row loads
SELECT cache_reads() AS r0 \gset
SELECT count(*) AS rows,
       count(*) FILTER (WHERE nn_classify(CASE WHEN id % 2 = 0 THEN 'cache_a' ELSE 'cache_b' END, x)
                              = CASE WHEN id % 2 = 0 THEN ka ELSE kb END) AS same
FROM (SELECT * FROM cache_ref ORDER BY id OFFSET 0) r;
SELECT cache_models(), cache_reads() - :r0 AS loads;
-- three call sites in one statement evict each other on every row: all
-- 180 calls but the first load
SELECT cache_reads() AS r0 \gset
SELECT count(*) AS rows,
       count(*) FILTER (WHERE nn_predict('cache_a', x) = pa
                          AND nn_predict('cache_b', x) = pb
                          AND nn_predict('cache_c', x) = pc) AS same
FROM (SELECT * FROM cache_ref ORDER BY id OFFSET 0) r;
SELECT cache_models(), cache_reads() - :r0 AS loads;
COMMIT;

-- nn_predict_batch uses a private copy: the same answers as before, and
-- the cache keeps the one model it had
SELECT m.model, count(*) AS rows,
       count(*) FILTER (WHERE b.prediction = r.prediction AND b.class IS NOT DISTINCT FROM r.class) AS same
FROM (VALUES ('cache_a'), ('cache_b'), ('cache_c')) m(model)
CROSS JOIN LATERAL nn_predict_batch(m.model, 'SELECT id, x FROM cache_pts') b
JOIN cache_ref_batch r ON r.model = m.model AND r.id = b.id
GROUP BY m.model ORDER BY m.model;
SELECT cache_models();

-- a budget that holds any two of three equal models (about 0.4 MB each):
-- loading a third drops the least recently used
SELECT count(nn_create('cache_m' || i, '[{"type": "dense", "units": 1500, "activation": "relu"},
                                         {"type": "dense", "units": 4}]', '{64}', i))
FROM generate_series(1, 3) i;
CREATE TABLE cache_m_in AS
SELECT array_agg(rnd(i, 5)::real ORDER BY i) AS x FROM generate_series(1, 64) i;
CREATE TABLE cache_m_ref AS
SELECT i, nn_predict('cache_m' || i, x) AS p FROM cache_m_in, generate_series(1, 3) i;
SELECT count(DISTINCT p) AS distinct_answers FROM cache_m_ref;
-- (with no budget still, cache_m3 is left alone in the cache)
SELECT cache_models();
-- cache_step(k): predict with cache_mk; whether it answers as before and
-- how many models that loaded
CREATE FUNCTION cache_step(k int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r0 bigint := cache_reads();
    same boolean;
BEGIN
    SELECT nn_predict('cache_m' || k, x) = p INTO same
    FROM cache_m_in, cache_m_ref r WHERE r.i = k;
    RETURN format('%s, %s loaded', CASE WHEN same THEN 'same' ELSE 'differs' END,
                  cache_reads() - r0);
END
$$;
SET nnpg.model_cache_mb = 1;
-- in order: 1 joins 3; 2 replaces 3; 3 replaces 1; 2 is cached; 1
-- replaces 3; 2 is cached; 3 replaces 1; 2 is cached; 1 replaces 3
SELECT n, i AS model, cache_step(i)
FROM unnest('{1, 2, 3, 2, 1, 2, 3, 2, 1}'::int[]) WITH ORDINALITY u(i, n);
SELECT cache_models(), cache_within(1);
-- a larger budget keeps all three; a smaller one applies from the next
-- look-up, which keeps the model in use even when it alone is over budget
SET nnpg.model_cache_mb = 2;
SELECT cache_step(3), cache_step(2), cache_step(1);
SELECT cache_models(), cache_within(2);
SET nnpg.model_cache_mb = 0;
SELECT cache_step(3);
SELECT cache_models();

RESET nnpg.model_cache_mb;
SELECT count(nn_drop(name)) FROM (SELECT DISTINCT name FROM nnpg.models WHERE name LIKE 'cache\_%') m;
DROP TABLE cache_pts, cache_ref, cache_ref_batch, cache_m_in, cache_m_ref;
DROP FUNCTION cache_models(), cache_within(int), cache_reads(), cache_toasted(), cache_step(int);
