--
-- install: the objects CREATE EXTENSION makes, their labels and settings
--
-- (a role named nnpg would otherwise create its tables in schema nnpg)
SET search_path = public;
CREATE EXTENSION nnpg;

SELECT extname, extversion, extrelocatable, n.nspname AS schema
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'nnpg';

-- the internal schema, the model table, its dump registration and RLS
SELECT nspname FROM pg_namespace WHERE nspname = 'nnpg';
SELECT relname, relrowsecurity, relforcerowsecurity
FROM pg_class WHERE oid = 'nnpg.models'::regclass;
SELECT extconfig::regclass[] FROM pg_extension WHERE extname = 'nnpg';
SELECT polname, polcmd FROM pg_policy WHERE polrelid = 'nnpg.models'::regclass;
-- model bytes are stored out of line uncompressed (storage e)
SELECT attname, format_type(atttypid, atttypmod), attstorage
FROM pg_attribute
WHERE attrelid = 'nnpg.models'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;
SELECT privilege_type FROM information_schema.role_table_grants
WHERE table_schema = 'nnpg' AND table_name = 'models' AND grantee = 'PUBLIC'
ORDER BY 1;
SELECT has_schema_privilege('public', 'nnpg', 'USAGE');

-- every function: arguments, volatility, parallel safety, strictness,
-- SECURITY DEFINER (none) and a comment
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       p.pronargdefaults AS defaults, p.provolatile, p.proparallel,
       p.proisstrict, p.prosecdef,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
     AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'nnpg'
WHERE p.proname <> 'nn_fit'
ORDER BY p.proname, args;

SELECT a.i, a.name, p.provolatile, p.proparallel, p.proisstrict, p.prosecdef
FROM pg_proc p, unnest(p.proargnames) WITH ORDINALITY a(name, i)
WHERE p.oid = 'nn_fit'::regproc AND a.i <= p.pronargs
ORDER BY a.i;
SELECT pronargdefaults FROM pg_proc WHERE oid = 'nn_fit'::regproc;

SELECT pg_get_function_result('nn_fit'::regproc);
SELECT pg_get_function_result('nn_history'::regproc);

-- the view applies RLS as the caller
SELECT attname FROM pg_attribute
WHERE attrelid = 'nn_models'::regclass AND attnum > 0 ORDER BY attnum;
SELECT reloptions FROM pg_class WHERE oid = 'nn_models'::regclass;

-- settings exist once the library is loaded
LOAD 'nnpg';
SHOW nnpg.data_cache_mb;
SHOW nnpg.max_model_mb;
SHOW nnpg.model_cache_mb;
SELECT current_setting('nnpg.threads')::int >= 1 AS threads_set;
SET nnpg.threads = 0;
SET nnpg.threads = 1;
SET nnpg.no_such_setting = 1;

-- a helper for the other tests: SQLSTATE and message of a statement
CREATE FUNCTION public.err(q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- deterministic pseudo-random numbers in [0, 1) for test data
CREATE FUNCTION public.rnd(i bigint, k int) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT (hashint8(i * 7919 + k) & 1048575) / 1048576.0
$$;
