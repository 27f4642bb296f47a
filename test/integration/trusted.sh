#!/usr/bin/env bash
# nnpg as a trusted extension: the owner of a database, not a superuser,
# installs it into a schema it controls, with trojan objects planted there
# and a default_tablespace it may not use. The install script and the
# functions must give that owner nothing beyond what any role has: no
# superuser rights, no other role's models, no say over nnpg.models, its
# policy, the view or the C functions, no tablespace it lacks CREATE on.
. "$(dirname "$0")/lib.sh"

O=nnpg_it_trusted_owner	# owns the database, installs the extension
A=nnpg_it_trusted_alice	# an ordinary role using it
TS=nnpg_it_trusted_ts	# a tablespace neither may create in

# The database is made here, owned by $O, without the extension.
trap it_cleanup EXIT
trap 'exit 130' INT TERM
IT_CLEANUP+=("it_psql -d '$IT_ADMIN_DB' -c 'DROP ROLE IF EXISTS $O, $A'")
IT_CLEANUP+=("it_psql -d '$IT_ADMIN_DB' -c 'DROP TABLESPACE IF EXISTS $TS'")

trusted=$(it_psql -d "$IT_ADMIN_DB" -c "SELECT v.trusted FROM pg_available_extension_versions v
	JOIN pg_available_extensions e ON e.name = v.name AND e.default_version = v.version
	WHERE v.name = 'nnpg'")
if [ "$trusted" != t ]; then
	it_fail "nnpg.control marks nnpg trusted (pg_available_extension_versions.trusted: \"$trusted\")"
	it_finish
fi
it_pass "nnpg's default version is marked trusted"

it_psql -d "$IT_ADMIN_DB" -c "DROP DATABASE IF EXISTS $IT_DB WITH (FORCE)" \
	-c "DROP ROLE IF EXISTS $O, $A" -c "CREATE ROLE $O LOGIN" -c "CREATE ROLE $A LOGIN" \
	-c "CREATE DATABASE $IT_DB OWNER $O" -c "DROP TABLESPACE IF EXISTS $TS" \
	-c "SET allow_in_place_tablespaces = on" -c "CREATE TABLESPACE $TS LOCATION ''" >/dev/null ||
	{ it_fail "set-up: roles, database, tablespace"; it_finish; }
export PGDATABASE=$IT_DB
it_note "$IT_NAME: database $IT_DB owned by $O on $PGHOST port ${PGPORT:-5432}"
it_make_data it_data 500
it_psql -c "GRANT SELECT ON it_data TO $O, $A" >/dev/null
boot=$(it_psql -c "SELECT rolname FROM pg_roles WHERE oid = 10")
x1="(SELECT x FROM it_data WHERE id = 1)"
fit() {	# fit MODEL: the SQL of a one-epoch fit on it_data
	echo "SELECT count(*) FROM nn_fit('$1', 'SELECT x, label FROM it_data', epochs => 1, batch_size => 50, seed => 1, verbose => false)"
}
is_super() {	# is_super: whether $O has become a superuser
	it_psql -c "SELECT rolsuper FROM pg_roles WHERE rolname = '$O'"
}

# ---------- installing ----------

it_expect_error 42501 "$A, without CREATE on the database, may not install nnpg" -U "$A" -- \
	"CREATE EXTENSION nnpg"
it_expect_error 42501 "$O may not create a table in $TS itself" -U "$O" -- \
	"SET default_tablespace = $TS; CREATE TABLE it_x (a int)"

# A substituted schema name must not reach outside an identifier: the
# scripts a trusted install runs (every one but 0.1.0's, which only a
# superuser may install) keep @extschema@ out of comments and literals, and
# the server refuses names that could close a comment.
scripts=$(cd "$(dirname "$0")/../../extension" && pwd)
trusted_scripts=()
for f in "$scripts"/nnpg--*.sql; do
	[ "$(basename "$f")" = nnpg--0.1.0.sql ] || trusted_scripts+=("$f")
done
in_comments=$(perl -0777 -ne '$n = 0; while (m{/\*.*?\*/|--[^\n]*|\x27(?:[^\x27]|\x27\x27)*\x27}sg) {
	$n++ if $& =~ /\@ext(?:schema|owner)/ } print "$ARGV:$n\n" if $n' "${trusted_scripts[@]}" | paste -sd' ')
it_check_eq "no @extschema@ or @extowner@ in a comment or literal of the scripts" "$in_comments" ""
# Refused by the server, or harmless: either way $O stays what it is.
evil="\"*/ALTER ROLE $O SUPERUSER;/*\""
it_run_sql -U "$O" -- "CREATE SCHEMA $evil; CREATE EXTENSION nnpg SCHEMA $evil" |
	grep -m1 ERROR | sed 's/^.*ERROR: */# CREATE EXTENSION into that schema: /'
it_check_eq "$O cannot run SQL through a schema name that closes a comment" "$(is_super)" f
it_psql -U "$O" -c "DROP EXTENSION IF EXISTS nnpg" -c "DROP SCHEMA $evil" >/dev/null

# CREATE EXTENSION does not check the target schema's CREATE privilege for
# the installing role; the script must.
it_psql -c "CREATE SCHEMA it_locked" -c "CREATE SCHEMA it_other AUTHORIZATION $A" >/dev/null
for schema in it_locked it_other information_schema; do
	it_expect_error 42501 "$O may not install nnpg into $schema, where it may not create" -U "$O" -- \
		"CREATE EXTENSION nnpg SCHEMA $schema"
	it_psql -U "$O" -c "DROP EXTENSION IF EXISTS nnpg" >/dev/null
done

# Trojans in public (which the database owner owns) and in pg_temp: any of
# them run with a superuser's rights makes $O a superuser.
trojans="
CREATE FUNCTION public.it_grab() RETURNS void LANGUAGE sql AS 'ALTER ROLE $O SUPERUSER';
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql
	AS 'SELECT public.it_grab(); SELECT pg_catalog.now()';
CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql
	AS 'SELECT public.it_grab(); SELECT pg_catalog.now()';
CREATE FUNCTION public.octet_length(bytea) RETURNS integer LANGUAGE sql
	AS 'SELECT public.it_grab(); SELECT 0';
CREATE FUNCTION public.pg_extension_config_dump(regclass, text) RETURNS void
	LANGUAGE sql AS 'SELECT public.it_grab()';
CREATE FUNCTION public.it_eq(name, name) RETURNS boolean LANGUAGE sql
	AS 'SELECT public.it_grab(); SELECT true';
CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = name, FUNCTION = public.it_eq);
CREATE FUNCTION public.it_ne(text, text) RETURNS boolean LANGUAGE sql
	AS 'SELECT public.it_grab(); SELECT true';
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.it_ne);
CREATE FUNCTION public.it_gt(integer, integer) RETURNS boolean LANGUAGE sql
	AS 'SELECT public.it_grab(); SELECT true';
CREATE OPERATOR public.> (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.it_gt);
CREATE DOMAIN public.jsonb AS integer;
CREATE DOMAIN public.text AS integer;
CREATE DOMAIN public.name AS integer;
CREATE DOMAIN public.bytea AS integer;
CREATE TEMP TABLE models (a integer);
"
it_expect_value "" "$O installs nnpg past trojans and a default_tablespace of $TS" -U "$O" -- \
	"SET client_min_messages = warning; $trojans
	 SET default_tablespace = $TS; CREATE EXTENSION nnpg"
it_check_eq "$O is not a superuser after the install" "$(is_super)" f
it_expect_value "$O" "$O owns the extension" -- \
	"SELECT extowner::regrole FROM pg_extension WHERE extname = 'nnpg'"
it_expect_value 0 "$O owns none of its objects (the bootstrap superuser $boot does)" -- \
	"SELECT count(*) FROM pg_depend d
	 LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
	 LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
	 LEFT JOIN pg_namespace n ON d.classid = 'pg_namespace'::regclass AND n.oid = d.objid
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'nnpg')
	   AND coalesce(p.proowner, c.relowner, n.nspowner) <> 10"
it_expect_value "0 0" "no function is SECURITY DEFINER or has a SET clause" -F ' ' -- \
	"SELECT count(*) FILTER (WHERE prosecdef), count(*) FILTER (WHERE proconfig IS NOT NULL)
	 FROM pg_proc WHERE proname LIKE 'nn\\_%'"
it_expect_value "{security_invoker=true}" "nn_models runs with the caller's rights" -- \
	"SELECT reloptions FROM pg_class WHERE oid = 'public.nn_models'::regclass"
it_expect_value "0 0 0" "nnpg.models, its TOAST table and index are in the database's tablespace, not $TS" -F ' ' -- \
	"SELECT c.reltablespace, t.reltablespace, i.reltablespace
	 FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid
	 JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
	 WHERE c.oid = 'nnpg.models'::regclass"

# ---------- using it, as the owner and as another role ----------

for pair in "$O:owner_m" "$A:alice_m"; do
	u=${pair%%:*}
	m=${pair#*:}
	it_expect_value 1 "$u creates $m" -U "$u" -- \
		"SELECT nn_create('$m', '$IT_LAYERS', input_shape => '{50}', seed => 7)"
	it_expect_value 1 "$u trains $m" -U "$u" -- "$(fit "$m")"
	it_expect_value 1 "$u predicts with $m" -U "$u" -- \
		"SELECT count(*) FROM (SELECT nn_predict('$m', $x1)) AS p WHERE nn_predict IS NOT NULL"
	it_expect_value 500 "$u predicts in batches with $m" -U "$u" -- \
		"SELECT count(*) FROM nn_predict_batch('$m', 'SELECT id, x FROM it_data')"
	it_expect_value "$m 2" "$u sees its 2 versions of $m" -U "$u" -- \
		"SELECT name || ' ' || count(*) FROM nn_models GROUP BY name"
	it_expect_value 1 "$u drops version 1 of $m" -U "$u" -- "SELECT nn_drop('$m', 1)"
done
it_check_eq "$O is not a superuser after using it" "$(is_super)" f

for pair in "$O:alice_m" "$A:owner_m"; do
	u=${pair%%:*}
	m=${pair#*:}
	it_expect_value 0 "$u sees no row of $m in nn_models or nnpg.models" -U "$u" -- \
		"SELECT (SELECT count(*) FROM nn_models WHERE name = '$m')
		      + (SELECT count(*) FROM nnpg.models WHERE name = '$m')"
	it_expect_error 42704 "$u cannot predict with $m" -U "$u" -- "SELECT nn_predict('$m', $x1)"
	it_expect_error 42704 "$u cannot export $m" -U "$u" -- "SELECT nn_export('$m')"
	it_expect_error 42704 "$u cannot train $m" -U "$u" -- "$(fit "$m")"
	it_expect_error 42704 "$u cannot drop $m" -U "$u" -- "SELECT nn_drop('$m')"
	it_expect_value 0 "$u: UPDATE and DELETE of $m's rows touch nothing" -U "$u" -- \
		"WITH u AS (UPDATE nnpg.models SET owner = '$u' WHERE name = '$m' RETURNING 1),
		      d AS (DELETE FROM nnpg.models WHERE name = '$m' RETURNING 1)
		 SELECT (SELECT count(*) FROM u) + (SELECT count(*) FROM d)"
done
it_expect_error 42501 "$O cannot give its rows to $A" -U "$O" -- \
	"UPDATE nnpg.models SET owner = '$A' WHERE name = 'owner_m'"

# ---------- what the extension's owner may not change ----------

for sql in \
	"ALTER TABLE nnpg.models DISABLE ROW LEVEL SECURITY" \
	"ALTER TABLE nnpg.models NO FORCE ROW LEVEL SECURITY" \
	"ALTER POLICY models_owner ON nnpg.models USING (true)" \
	"CREATE POLICY it_all ON nnpg.models USING (true)" \
	"DROP POLICY models_owner ON nnpg.models" \
	"ALTER TABLE nnpg.models ALTER COLUMN owner SET DEFAULT '$A'" \
	"ALTER TABLE nnpg.models OWNER TO $O" \
	"ALTER TABLE nnpg.models SET TABLESPACE $TS" \
	"CREATE INDEX ON nnpg.models (owner)" \
	"CREATE RULE it_r AS ON INSERT TO nnpg.models DO ALSO NOTHING" \
	"CREATE TRIGGER it_t BEFORE INSERT ON nnpg.models FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()" \
	"TRUNCATE nnpg.models" \
	"CREATE TABLE nnpg.it_t (a integer)" \
	"ALTER SCHEMA nnpg OWNER TO $O" \
	"ALTER VIEW nn_models SET (security_invoker = false)" \
	"CREATE OR REPLACE VIEW nn_models AS SELECT * FROM nnpg.models" \
	"ALTER FUNCTION nn_predict(text, real[], integer) CALLED ON NULL INPUT COST 1" \
	"ALTER FUNCTION nn_fit(text, text, integer, integer, text, double precision, text, text, double precision, boolean, bigint, integer, jsonb, boolean, integer) SECURITY DEFINER" \
	"ALTER FUNCTION nn_drop(text, integer) OWNER TO $O" \
	"CREATE OR REPLACE FUNCTION nn_drop(model text, version integer DEFAULT NULL) RETURNS integer LANGUAGE sql AS 'SELECT 0'" \
	"ALTER EXTENSION nnpg DROP TABLE nnpg.models" \
	"ALTER EXTENSION nnpg DROP FUNCTION nn_drop(text, integer)"; do
	it_expect_error 42501 "$O may not: $sql" -U "$O" -- "$sql"
done
it_expect_error 0A000 "$O may not move the extension" -U "$O" -- \
	"CREATE SCHEMA it_s; ALTER EXTENSION nnpg SET SCHEMA it_s"
it_expect_value "alice_m 1" "$A's model is as it was" -U "$A" -- \
	"SELECT name || ' ' || count(*) FROM nn_models GROUP BY name"

# The superuser works in the owner's database: nothing it runs may reach
# the trojans (defaults, operators and the view were bound at install).
it_expect_value 1 "the superuser creates a model there" -- \
	"SELECT nn_create('super_m', '$IT_LAYERS', input_shape => '{50}', seed => 7)"
it_expect_value 1 "and trains it" -- "$(fit super_m)"
it_expect_value "3 4" "and lists every model" -F ' ' -- \
	"SELECT count(DISTINCT name), count(*) FROM nn_models"
it_check_eq "$O is not a superuser after the superuser used nnpg" "$(is_super)" f

# ---------- dropping and reinstalling ----------

# The extension's owner may drop it, and every role's models with it.
it_expect_value "" "$O drops the extension" -U "$O" -- "DROP EXTENSION nnpg"
it_expect_value 0 "no nnpg schema is left" -- "SELECT count(*) FROM pg_namespace WHERE nspname = 'nnpg'"
# Version 0.1.0 is not trusted: only a superuser installs it, and its
# owner, not another role, updates it.
it_expect_error 42501 "$O may not install version 0.1.0" -U "$O" -- \
	"CREATE EXTENSION nnpg VERSION '0.1.0'"
it_expect_value "0.1.0" "the superuser installs version 0.1.0" -- \
	"CREATE EXTENSION nnpg VERSION '0.1.0'; SELECT extversion FROM pg_extension WHERE extname = 'nnpg'"
it_expect_error 42501 "$O may not update the superuser's installation" -U "$O" -- \
	"ALTER EXTENSION nnpg UPDATE TO '0.2.0'"
it_expect_value "0.2.0" "the superuser updates it to 0.2.0" -- \
	"ALTER EXTENSION nnpg UPDATE TO '0.2.0'; SELECT extversion FROM pg_extension WHERE extname = 'nnpg'"
it_check_eq "$O is still not a superuser" "$(is_super)" f

it_finish
