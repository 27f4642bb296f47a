--
-- prune: nn_prune zeroes the smallest kernel weights, later fits keep them
-- zero, and the stored bytes shrink with the sparsity
--
SET nnpg.threads = 1;
SET search_path = public;

-- two classes in 40 features: the sign of the sum of the first four
CREATE TABLE pr_data AS
SELECT i AS id,
       (SELECT array_agg(rnd(i, f) - 0.5 ORDER BY f) FROM generate_series(1, 40) f)::real[] AS x,
       (rnd(i, 1) + rnd(i, 2) + rnd(i, 3) + rnd(i, 4) > 2)::int AS y
FROM generate_series(1, 800) i;
SELECT nn_create('pr_net', '[{"type": "dense", "units": 96, "activation": "relu"},
                             {"type": "dense", "units": 2, "activation": "softmax"}]',
                 '{40}', 2);
SELECT count(*) FROM nn_fit('pr_net', 'SELECT x, y FROM pr_data', epochs => 20,
                            learning_rate => 0.003, seed => 1, verbose => false);

-- version 3: 80% of each kernel's weights are zero
SELECT nn_prune('pr_net', 0.8);
SELECT version, format, round(sparsity::numeric, 3) AS sparsity
FROM nn_models WHERE name = 'pr_net' ORDER BY version;
SELECT training ->> 'pruned' AS pruned, training -> 'from_version' AS from_version,
       training -> 'sparsity' AS sparsity
FROM nnpg.models WHERE name = 'pr_net' AND version = 3;
-- stored sparsely: at most 35% of the unpruned weights' bytes (version 1,
-- no optimizer state either)
SELECT (SELECT size_bytes FROM nn_models WHERE name = 'pr_net' AND version = 3)::float8 /
       (SELECT size_bytes FROM nn_models WHERE name = 'pr_net' AND version = 1) < 0.35
       AS compact;
-- still a classifier
SELECT value > 0.8 AS accurate FROM nn_evaluate('pr_net', 'SELECT x, y FROM pr_data', 3)
WHERE metric = 'accuracy';

-- fine-tuning from version 3 keeps the pruned weights zero
SELECT count(*) FROM nn_fit('pr_net', 'SELECT x, y FROM pr_data', epochs => 2,
                            learning_rate => 0.001, seed => 2, verbose => false);
SELECT version, round(sparsity::numeric, 3) AS sparsity,
       training -> 'from_version' AS from_version
FROM nn_models WHERE name = 'pr_net' AND version = 4;
SELECT value > 0.8 AS accurate FROM nn_evaluate('pr_net', 'SELECT x, y FROM pr_data')
WHERE metric = 'accuracy';

-- export and import keep the mask; the lineage of version 4 has 22 epochs
SELECT nn_import('pr_copy', nn_export('pr_net'));
SELECT round(sparsity::numeric, 3) AS sparsity FROM nn_models WHERE name = 'pr_copy';
SELECT count(*) FILTER (WHERE nn_predict('pr_copy', x) = nn_predict('pr_net', x)) AS same
FROM pr_data WHERE id <= 20;
SELECT xml_is_well_formed_document(nn_plot('pr_net')) AS plotted;
-- pruning further, and pruning nothing
SELECT nn_prune('pr_net', 0.95);
SELECT nn_prune('pr_net', 0, 1);
SELECT version, round(sparsity::numeric, 3) AS sparsity FROM nn_models
WHERE name = 'pr_net' AND version >= 5 ORDER BY version;

-- bad input: nothing is stored
SELECT nn_prune('pr_net', 1);
SELECT nn_prune('pr_net', -0.1);
SELECT nn_prune('pr_net', 'NaN');
SELECT nn_prune('pr_net', NULL);
SELECT nn_prune(NULL, 0.5);
SELECT nn_prune('pr_nosuch', 0.5);
SELECT nn_prune('pr_net', 0.5, 99);
SELECT nn_create('pr_unbuilt', '[{"type": "dense", "units": 2}]');
SELECT nn_prune('pr_unbuilt', 0.5);
SELECT count(*) FROM nnpg.models WHERE name = 'pr_net';

SELECT nn_drop('pr_net'), nn_drop('pr_copy'), nn_drop('pr_unbuilt');
DROP TABLE pr_data;
