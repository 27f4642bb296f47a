#!/usr/bin/env bash
# Two ordinary roles each create and use their own models, and neither can
# see, use, change or drop the other's: to each, the other's model does not
# exist (42704). The superuser sees both.
. "$(dirname "$0")/lib.sh"

A=nnpg_it_alice
B=nnpg_it_bob

it_setup_db
IT_CLEANUP+=("it_psql -d '$IT_ADMIN_DB' -c 'DROP ROLE IF EXISTS $A, $B'")
it_psql -c "DROP ROLE IF EXISTS $A, $B" -c "CREATE ROLE $A LOGIN" \
	-c "CREATE ROLE $B LOGIN" >/dev/null || { it_fail "CREATE ROLE"; it_finish; }
it_make_data it_data 500
it_psql -c "GRANT SELECT ON it_data TO $A, $B" >/dev/null

fit() {	# fit MODEL: the SQL of a one-epoch fit on it_data
	echo "SELECT count(*) FROM nn_fit('$1', 'SELECT x, label FROM it_data', epochs => 1, batch_size => 50, verbose => false)"
}
x1="(SELECT x FROM it_data WHERE id = 1)"

for pair in "$A:alice_m" "$B:bob_m"; do
	u=${pair%%:*}
	m=${pair#*:}
	it_expect_value 1 "$u creates $m" -U "$u" -- \
		"SELECT nn_create('$m', '$IT_LAYERS', input_shape => '{50}', seed => 7)"
	it_expect_value 1 "$u trains $m" -U "$u" -- "$(fit "$m")"
	it_expect_value 1 "$u predicts with $m" -U "$u" -- \
		"SELECT count(*) FROM (SELECT nn_predict('$m', $x1)) AS p WHERE nn_predict IS NOT NULL"
	it_expect_value "$m 2" "$u sees its 2 versions of $m" -U "$u" -- \
		"SELECT name || ' ' || count(*) FROM nn_models GROUP BY name"
done
before=$(it_psql -U "$A" -c "SELECT nn_predict('alice_m', $x1)::text")
[ -n "$before" ] || it_fail "alice's prediction came back empty"

# Each against the other's model.
for pair in "$B:alice_m" "$A:bob_m"; do
	u=${pair%%:*}
	m=${pair#*:}
	it_expect_value 0 "$u does not see $m in nn_models" -U "$u" -- \
		"SELECT count(*) FROM nn_models WHERE name = '$m'"
	out=$(it_run_sql -U "$u" -- "SELECT count(*) FROM nnpg.models WHERE name = '$m'")
	case "$out" in
	*"SQLSTATE 42501") it_pass "$u may not read nnpg.models (42501)" ;;
	$'0\nSQLSTATE 00000') it_pass "$u sees no row of $m in nnpg.models" ;;
	*) it_fail "$u reads nnpg.models for $m: $out" ;;
	esac
	it_expect_error 42704 "$u cannot predict with $m" -U "$u" -- \
		"SELECT nn_predict('$m', $x1)"
	it_expect_error 42704 "$u cannot classify with $m" -U "$u" -- \
		"SELECT nn_classify('$m', $x1)"
	it_expect_error 42704 "$u cannot train $m" -U "$u" -- "$(fit "$m")"
	it_expect_error 42704 "$u cannot evaluate $m" -U "$u" -- \
		"SELECT * FROM nn_evaluate('$m', 'SELECT x, label FROM it_data')"
	it_expect_error 42704 "$u cannot see the summary of $m" -U "$u" -- \
		"SELECT * FROM nn_summary('$m')"
	it_expect_error 42704 "$u cannot export $m" -U "$u" -- \
		"SELECT nn_export('$m')"
	it_expect_error 42704 "$u cannot drop $m" -U "$u" -- \
		"SELECT nn_drop('$m')"
	it_expect_error 42704 "$u cannot drop version 1 of $m" -U "$u" -- \
		"SELECT nn_drop('$m', 1)"
	# Around the functions, straight at the table: refused or no rows.
	for dml in "DELETE FROM nnpg.models WHERE name = '$m'" \
		"UPDATE nnpg.models SET weights = '\\x00' WHERE name = '$m'"; do
		out=$(it_run_sql -U "$u" -- "WITH d AS ($dml RETURNING 1) SELECT count(*) FROM d")
		case "$out" in
		*"SQLSTATE 42501") it_pass "$u: ${dml%% *} on $m refused (42501)" ;;
		$'0\nSQLSTATE 00000') it_pass "$u: ${dml%% *} on $m touches no row" ;;
		*) it_fail "$u: ${dml%% *} on $m: $out" ;;
		esac
	done
done

it_expect_value "alice_m 2" "alice still has both versions" -U "$A" -- \
	"SELECT name || ' ' || count(*) FROM nn_models GROUP BY name"
it_check_eq "alice's model predicts as before" \
	"$(it_psql -U "$A" -c "SELECT nn_predict('alice_m', $x1)::text")" "$before"
it_expect_value "alice_m 2
bob_m 2" "the superuser sees both models" -- \
	"SELECT name || ' ' || count(*) FROM nn_models GROUP BY name ORDER BY name"
it_expect_value 2 "bob drops his own model" -U "$B" -- "SELECT nn_drop('bob_m')"
it_expect_value "alice_m 2" "alice's model survives that" -- \
	"SELECT name || ' ' || count(*) FROM nn_models GROUP BY name"

it_finish
