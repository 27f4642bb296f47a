#!/usr/bin/env bash
# A seed repeats a fit on an unchanged table even when the table is larger
# than a quarter of shared_buffers, where PostgreSQL starts a sequential
# scan wherever another scan of the table has got to (synchronize_seqscans):
# nnpg reads its queries with that off, for the query only.
. "$(dirname "$0")/lib.sh"

it_setup_db

# Rows of about 830 bytes on disk: enough for 1.3 x a quarter of the buffers.
rows=$(it_psql -c "SELECT ceil(1.3 * setting::bigint * 8192 / 4 / 830)::int
	FROM pg_settings WHERE name = 'shared_buffers'")
it_note "shared_buffers $(it_psql -c 'SHOW shared_buffers'): $rows rows"
it_psql -c "CREATE TABLE it_big AS
	SELECT i AS id,
	       decode(repeat(md5(i::text), 49), 'hex') AS img,  -- 784 bytes
	       i % 10 AS label
	FROM generate_series(1, $rows) AS i" -c "VACUUM ANALYZE it_big" >/dev/null ||
	{ it_fail "could not create it_big"; it_finish; }
it_expect_value t "it_big is larger than a quarter of shared_buffers" -- \
	"SELECT pg_relation_size('it_big') > (SELECT setting::bigint * 8192 / 4
		FROM pg_settings WHERE name = 'shared_buffers')"

# The loss of a 1-epoch fit from the same initial weights, in full.
fit_loss() {
	it_psql -c "SET nnpg.threads = 1" -c "SELECT nn_create('it_seed',
		'[{\"type\": \"rescale\", \"scale\": 0.004},
		  {\"type\": \"dense\", \"units\": 10, \"activation\": \"softmax\"}]',
		input_shape => '{784}', seed => 7, replace => true)" \
		-c "SELECT loss::text FROM nn_fit('it_seed', 'SELECT img, label FROM it_big',
		epochs => 1, batch_size => 64, seed => 11, verbose => false)" | tail -n 1
}

first=$(fit_loss)
it_note "first fit: loss $first"
# Another session stops a scan of it_big halfway: the next sequential scan
# with synchronize_seqscans on starts there.
it_psql -c "BEGIN" -c "DECLARE c CURSOR FOR SELECT * FROM it_big" \
	-c "FETCH $((rows / 2)) FROM c" -c "COMMIT" >/dev/null
it_expect_value t "a plain scan now starts elsewhere" -- \
	"SELECT (SELECT id FROM it_big LIMIT 1) <> 1"
it_check_eq "the same seed after that scan gives the same loss" \
	"$(fit_loss)" "$first"
it_check_eq "the session keeps its synchronize_seqscans" \
	"$(it_psql -c "SET synchronize_seqscans = on" \
		-c "SELECT count(*) FROM nn_fit('it_seed', 'SELECT img, label FROM it_big
			WHERE id <= 100', epochs => 1, verbose => false)" \
		-c "SHOW synchronize_seqscans" | tail -n 1)" on
it_finish
