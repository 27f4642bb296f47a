--
-- onnx: nn_import reads ONNX models (PyTorch's exports, committed in
-- test/fixtures/onnx), and nn_export(format => 'onnx') writes them
--
SET nnpg.threads = 1;
SET search_path = public;

-- the MLP PyTorch exported, its first input row and PyTorch's output for it
\set mlp `/usr/bin/python3 -c "print(open('test/fixtures/onnx/mlp.onnx', 'rb').read().hex())"`
\set mlp_in `/usr/bin/python3 -c "print('{' + ','.join(open('test/fixtures/onnx/mlp.txt').read().split('\n')[5].split()) + '}')"`
\set mlp_out `/usr/bin/python3 -c "print('{' + ','.join(open('test/fixtures/onnx/mlp.txt').read().split('\n')[9].split()) + '}')"`

-- the format is detected from the bytes
SELECT nn_import('ox_mlp', decode(:'mlp', 'hex'));
SELECT version, format, training ->> 'imported' AS imported, training -> 'input_shape' AS input_shape
FROM nn_models WHERE name = 'ox_mlp';
SELECT layer, type, output_shape, params FROM nn_summary('ox_mlp');
-- predicts what PyTorch predicted
SELECT max(abs(p - e)) <= 1e-4 * max(abs(e)) AS as_pytorch
FROM unnest(nn_predict('ox_mlp', :'mlp_in'::real[]), :'mlp_out'::real[]) AS t(p, e);
-- and trains further (fresh optimizer state)
CREATE TABLE ox_data AS
SELECT i AS id, (SELECT array_agg(rnd(i, f) - 0.5 ORDER BY f) FROM generate_series(1, 12) f)::real[] AS x,
       i % 3 AS y
FROM generate_series(1, 300) i;
SELECT count(*) FROM nn_fit('ox_mlp', 'SELECT x, y FROM ox_data', epochs => 2, seed => 1,
                            verbose => false);

-- nnpg -> ONNX -> nnpg predicts exactly as before, also for a CNN with
-- batchnorm and pooling
SELECT nn_create('ox_cnn', '[{"type": "reshape", "shape": [4, 3, 1]},
  {"type": "conv2d", "filters": 3, "kernel_size": 2, "padding": "same", "activation": "relu"},
  {"type": "batchnorm"}, {"type": "maxpool2d", "pool_size": 2},
  {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]', '{12}', 4);
SELECT count(*) FROM nn_fit('ox_cnn', 'SELECT x, y FROM ox_data', epochs => 2, seed => 2,
                            verbose => false);
SELECT nn_import('ox_cnn_back', nn_export('ox_cnn', format => 'onnx'), format => 'onnx');
SELECT count(*) FILTER (WHERE nn_predict('ox_cnn_back', x) = nn_predict('ox_cnn', x)) AS same,
       count(*) AS rows
FROM ox_data WHERE id <= 20;
-- an int8 version is written with its dequantized kernels
SELECT nn_quantize('ox_cnn', NULL);
SELECT nn_import('ox_int8_back', nn_export('ox_cnn', format => 'onnx'));
SELECT format FROM nn_models WHERE name = 'ox_int8_back';

-- bad input: nothing is stored
SELECT nn_import('ox_bad', decode(:'mlp', 'hex'), format => 'nnpg');
SELECT nn_import('ox_bad', '\x0a0b0c0d0e0f'::bytea, format => 'onnx');
SELECT nn_import('ox_bad', substr(decode(:'mlp', 'hex'), 1, 300), format => 'onnx');
SELECT nn_import('ox_bad', decode(:'mlp', 'hex'), format => 'tflite');
SELECT nn_export('ox_cnn', format => 'keras');
SELECT count(*) FROM nnpg.models WHERE name = 'ox_bad';

SELECT nn_drop('ox_mlp'), nn_drop('ox_cnn'), nn_drop('ox_cnn_back'), nn_drop('ox_int8_back');
DROP TABLE ox_data;
