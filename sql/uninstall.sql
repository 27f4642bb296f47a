--
-- uninstall: DROP EXTENSION removes the schema and its models; a new
-- install starts empty, and models cached by this backend are not reused
--
SET nnpg.threads = 1;
SET search_path = public;

SELECT nn_classify('clf', '{1.5, 1}'::real[]);
DROP EXTENSION nnpg;
SELECT count(*) FROM pg_namespace WHERE nspname = 'nnpg';
SELECT count(*) FROM pg_proc WHERE proname LIKE 'nn\_%';
SELECT count(*) FROM pg_class WHERE relname = 'nn_models';

CREATE EXTENSION nnpg;
SELECT count(*) FROM nnpg.models;
SELECT err($$SELECT nn_predict('clf', '{1, 2}'::real[])$$);
SELECT nn_create('clf', '[{"type": "dense", "units": 3}]', '{2}', 1);
SELECT array_length(nn_predict('clf', '{1, 2}'::real[]), 1) AS outputs;
SELECT nn_drop('clf');
