--
-- security: roles see and change only their own models; a hostile
-- search_path changes nothing
--
SET nnpg.threads = 1;
SET search_path = public;

CREATE ROLE nnpg_alice;
CREATE ROLE nnpg_bob;
GRANT SELECT ON blobs TO nnpg_alice, nnpg_bob;

SET ROLE nnpg_alice;
SELECT nn_create('alice_net', '[{"type": "dense", "units": 2, "activation": "softmax"}]', '{2}', 1);
SELECT count(*) FROM nn_fit('alice_net', 'SELECT x, y FROM blobs', epochs => 1, seed => 1, verbose => false);
SELECT name, version, owner FROM nn_models ORDER BY name, version;
SELECT nn_classify('alice_net', '{1.5, 1}'::real[]);

SET ROLE nnpg_bob;
-- alice's model does not exist for bob
SELECT name FROM nn_models;
SELECT count(*) FROM nnpg.models;
SELECT err($$SELECT nn_predict('alice_net', '{1, 2}'::real[])$$);
SELECT err($$SELECT * FROM nn_summary('alice_net')$$);
SELECT err($$SELECT * FROM nn_history('alice_net')$$);
SELECT err($$SELECT nn_export('alice_net')$$);
SELECT err($$SELECT * FROM nn_fit('alice_net', 'SELECT x, y FROM blobs')$$);
SELECT err($$SELECT * FROM nn_evaluate('alice_net', 'SELECT x, y FROM blobs')$$);
SELECT err($$SELECT nn_drop('alice_net')$$);
UPDATE nnpg.models SET weights = NULL WHERE name = 'alice_net';
DELETE FROM nnpg.models WHERE name = 'alice_net';
-- nor can bob take the name, or plant a row owned by alice
SELECT err($$SELECT nn_create('alice_net', '[{"type": "dense", "units": 1}]', '{2}')$$);
SELECT err($$INSERT INTO nnpg.models (name, version, owner, layers) VALUES ('x', 1, 'nnpg_alice', '[]')$$);
-- bob has models of his own
SELECT nn_create('bob_net', '[{"type": "dense", "units": 2, "activation": "softmax"}]', '{2}', 1);
SELECT nn_import('bob_copy', nn_export('bob_net'));
SELECT err($$UPDATE nnpg.models SET owner = 'nnpg_alice' WHERE name = 'bob_copy'$$);
SELECT name, owner FROM nn_models ORDER BY name;

-- the cache does not leak models across roles either
SET ROLE nnpg_alice;
SELECT nn_classify('alice_net', '{1.5, 1}'::real[]);
SELECT err($$SELECT nn_predict('bob_net', '{1, 2}'::real[])$$);
SELECT name, version FROM nn_models ORDER BY name, version;

-- superusers see every model
RESET ROLE;
SELECT name, owner FROM nn_models WHERE owner LIKE 'nnpg\_%' ORDER BY name, owner;

-- a hostile search_path: an "=" that is always true, functions that shadow
-- pg_catalog's; internal queries are schema-qualified and unaffected
CREATE SCHEMA evil;
CREATE FUNCTION evil.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always);
CREATE FUNCTION evil.max(integer) RETURNS integer LANGUAGE sql AS 'SELECT 1000';
GRANT USAGE ON SCHEMA evil TO PUBLIC;
SET ROLE nnpg_alice;
SET search_path = evil, public, pg_catalog;
SELECT nn_classify('alice_net', '{1.5, 1}'::real[]);
SELECT count(*) FROM nn_fit('alice_net', 'SELECT x, y FROM blobs', epochs => 1, seed => 1, verbose => false);
SELECT version FROM nn_models ORDER BY version;
SELECT nn_drop('alice_net', 3);
RESET search_path;
RESET ROLE;
DROP SCHEMA evil CASCADE;

-- clean up
SET ROLE nnpg_alice;
SELECT nn_drop('alice_net');
SET ROLE nnpg_bob;
SELECT nn_drop('bob_net'), nn_drop('bob_copy');
RESET ROLE;
REVOKE SELECT ON blobs FROM nnpg_alice, nnpg_bob;
DROP ROLE nnpg_alice;
DROP ROLE nnpg_bob;
