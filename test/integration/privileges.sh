#!/usr/bin/env bash
# The queries given to nn_fit and friends run with the caller's privileges:
# a role without SELECT on a table cannot train on it, validate, evaluate or
# predict over it (42501), and can once it is granted.
. "$(dirname "$0")/lib.sh"

C=nnpg_it_carol

it_setup_db
IT_CLEANUP+=("it_psql -d '$IT_ADMIN_DB' -c 'DROP ROLE IF EXISTS $C'")
it_psql -c "DROP ROLE IF EXISTS $C" -c "CREATE ROLE $C LOGIN" >/dev/null ||
	{ it_fail "CREATE ROLE"; it_finish; }
it_make_data it_data 500
it_psql -c "CREATE TABLE it_secret AS SELECT * FROM it_data" \
	-c "REVOKE ALL ON it_secret FROM PUBLIC" \
	-c "GRANT SELECT ON it_data TO $C" >/dev/null
it_expect_value 1 "$C creates a model" -U "$C" -- \
	"SELECT nn_create('carol_m', '$IT_LAYERS', input_shape => '{50}', seed => 7)"

fit() {	# fit QUERY [MORE ARGS]: a one-epoch fit of carol_m
	echo "SELECT count(*) FROM nn_fit('carol_m', '$1', epochs => 1, batch_size => 50, verbose => false${2:+, $2})"
}
secret='SELECT x, label FROM it_secret'
open='SELECT x, label FROM it_data'

it_expect_error 42501 "$C cannot train on it_secret" -U "$C" -- "$(fit "$secret")"
it_expect_error 42501 "$C cannot validate on it_secret" -U "$C" -- \
	"$(fit "$open" "validation_query => '$secret'")"
it_expect_error 42501 "$C cannot evaluate on it_secret" -U "$C" -- \
	"SELECT * FROM nn_evaluate('carol_m', '$secret')"
it_expect_error 42501 "$C cannot get a confusion matrix of it_secret" -U "$C" -- \
	"SELECT * FROM nn_confusion_matrix('carol_m', '$secret')"
it_expect_error 42501 "$C cannot predict over it_secret" -U "$C" -- \
	"SELECT count(*) FROM nn_predict_batch('carol_m', 'SELECT id, x FROM it_secret')"
it_check_eq "no version was stored by those" "$(it_versions carol_m)" "1 1"

# Column privileges count too.
it_psql -c "GRANT SELECT (id, label) ON it_secret TO $C" >/dev/null
it_expect_error 42501 "$C cannot train on a column it may not read" -U "$C" -- \
	"$(fit "$secret")"
it_check_eq "still no new version" "$(it_versions carol_m)" "1 1"

# The controls: what is granted works, so the refusals above were about
# privileges.
it_expect_value 1 "$C trains on it_data" -U "$C" -- "$(fit "$open")"
it_psql -c "GRANT SELECT ON it_secret TO $C" >/dev/null
it_expect_value 1 "$C trains on it_secret once granted" -U "$C" -- "$(fit "$secret")"
it_check_eq "those stored versions 2 and 3" "$(it_versions carol_m)" "3 3"

it_finish
