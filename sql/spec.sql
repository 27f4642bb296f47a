--
-- spec: every class of bad layer specification gives 22023 (or 22004 for
-- NULLs, 54000 for limits) naming the layer, its type and the option
--
SET nnpg.threads = 1;
SET search_path = public;

-- the shape of the layers argument
SELECT err($$SELECT nn_create('m', '{}')$$);
SELECT err($$SELECT nn_create('m', '"dense"')$$);
SELECT err($$SELECT nn_create('m', '[]')$$);
SELECT err($$SELECT nn_create('m', '[1]')$$);
SELECT err($$SELECT nn_create('m', '[{"units": 3}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": 3}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "denser"}]')$$);
SELECT err($$SELECT nn_create('m', (SELECT jsonb_agg('{"type": "flatten"}'::jsonb) FROM generate_series(1, 257)))$$);

-- NULLs and names
SELECT err($$SELECT nn_create(NULL, '[{"type": "dense", "units": 1}]')$$);
SELECT err($$SELECT nn_create('m', NULL)$$);
SELECT err($$SELECT nn_create('', '[{"type": "dense", "units": 1}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 1}]', replace => NULL)$$);

-- unrecognized options, with the list of valid ones in the hint
SELECT nn_create('m', '[{"type": "dense", "unit": 10}]');
SELECT nn_create('m', '[{"type": "flatten", "units": 10}]');

-- dense
SELECT err($$SELECT nn_create('m', '[{"type": "dense"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 0}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": -3}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 2.5}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": "10"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 99999999999}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 2, "activation": "relux"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 2, "activation": 1}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 2, "use_bias": "yes"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 2, "l2": -0.1}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 2, "l1": "a"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 2, "activation": "relu", "alpha": 0.1}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 2, "activation": "elu", "alpha": -1}]')$$);

-- conv2d and pools
SELECT err($$SELECT nn_create('m', '[{"type": "conv2d", "kernel_size": 3}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "conv2d", "filters": 4}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "conv2d", "filters": 4, "kernel_size": [3]}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "conv2d", "filters": 4, "kernel_size": [3, 3, 3]}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "conv2d", "filters": 4, "kernel_size": 0}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "conv2d", "filters": 4, "kernel_size": 3, "strides": [1, 0]}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "full"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "maxpool2d", "pool_size": "2"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "avgpool2d", "padding": 1}]')$$);

-- the other layers
SELECT err($$SELECT nn_create('m', '[{"type": "dropout", "rate": 1}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dropout", "rate": -0.1}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "reshape"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "reshape", "shape": []}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "reshape", "shape": [1, 2, 3, 4]}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "reshape", "shape": [28, 0]}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "reshape", "shape": 28}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "activation"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "activation", "activation": "swish"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "rescale", "scale": "x"}]')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "normalize", "epsilon": 0}]')$$);

-- the layer number is 1-based and counts every layer
SELECT err($$SELECT nn_create('m', '[{"type": "flatten"}, {"type": "dense", "units": 4}, {"type": "conv2d", "filters": 0, "kernel_size": 3}]')$$);

-- input_shape
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 1}]', '{}')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 1}]', '{0}')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 1}]', '{1,2,3,4}')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 1}]', '{{1},{2}}')$$);
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 1}]', '{1,NULL}')$$);

-- shapes are checked by the core with the input shape, naming the layer
SELECT err($$SELECT nn_create('m', '[{"type": "reshape", "shape": [28, 28, 1]}]', '{100}')$$) LIKE '22023: layer 1 (reshape)%' AS reshape_mismatch;
SELECT err($$SELECT nn_create('m', '[{"type": "reshape", "shape": [4, 4, 1]}, {"type": "conv2d", "filters": 2, "kernel_size": 5}]', '{16}')$$) LIKE '22023: layer 2 (conv2d)%' AS kernel_too_big;
SELECT err($$SELECT nn_create('m', '[{"type": "conv2d", "filters": 2, "kernel_size": 3}]', '{16}')$$) LIKE '22023: layer 1 (conv2d)%' AS conv_on_vector;

-- a budget: 54000
SET nnpg.max_model_mb = 1;
SELECT err($$SELECT nn_create('m', '[{"type": "dense", "units": 4096}]', '{4096}')$$) LIKE '54000:%' AS over_budget;
RESET nnpg.max_model_mb;

-- nothing was stored by any of this
SELECT count(*) FROM nnpg.models;
