#!/usr/bin/env bash
# ALTER EXTENSION nnpg UPDATE takes a 0.1.0 installation to 0.2.0 in place.
# Models stored under 0.1.0 (trained here, and the model bytes of the 0.1.0
# core in test/fixtures/compat) keep their rows, history and summary,
# predict bit for bit as before (the compat ones as their fixtures say) and
# continue training from their stored optimizer state. The upgraded
# installation has the same objects as a fresh CREATE EXTENSION nnpg:
# pg_dump --schema-only, and the catalog entries of every member object.
. "$(dirname "$0")/lib.sh"

COMPAT=$(cd "$(dirname "$0")/../fixtures/compat" && pwd)
FRESH_DB=${IT_DB}_fresh
# One kernel thread: the compat fixtures were written on one, and a continued
# fit must repeat an uninterrupted one exactly. Floats print shortest-exact.
export PGOPTIONS="${PGOPTIONS:-} -c nnpg.threads=1 -c extra_float_digits=1"

# ---------- helpers ----------

# it_same DESC GOT WANT: pass when the two (multi-line) texts are equal and
# not empty; on failure show the difference.
it_same() {
	if [ -n "$3" ] && [ "$2" = "$3" ]; then
		it_pass "$1 ($(printf '%s\n' "$3" | wc -l) lines)"
	else
		it_fail "$1 (diff: < expected, > got)"
		diff <(printf '%s\n' "$3") <(printf '%s\n' "$2") | head -n 20 | sed 's/^/    | /'
	fi
}

extversion() {	# extversion [DB]
	it_psql -d "${1:-$IT_DB}" -c "SELECT extversion FROM pg_extension WHERE extname = 'nnpg'"
}

# hexes EXPR: a real[] as the text of an array of its IEEE-754 bit patterns,
# as the compat fixtures write them.
hexes() {
	echo "(SELECT array_agg(encode(float4send(v), 'hex') ORDER BY k)
		FROM unnest($1) WITH ORDINALITY AS u(v, k))::text"
}

# ---------- two databases: one at 0.1.0 to upgrade, one fresh 0.2.0 ----------

it_setup_db
IT_CLEANUP+=("it_psql -d '$IT_ADMIN_DB' -c 'DROP DATABASE IF EXISTS $FRESH_DB WITH (FORCE)'")
# it_setup_db installed the default version; this database starts at 0.1.0.
it_psql -c "DROP EXTENSION nnpg" -c "CREATE EXTENSION nnpg VERSION '0.1.0'" ||
	{ it_fail "CREATE EXTENSION nnpg VERSION '0.1.0'"; it_finish; }
{ it_psql -d "$IT_ADMIN_DB" -c "DROP DATABASE IF EXISTS $FRESH_DB WITH (FORCE)" \
	-c "CREATE DATABASE $FRESH_DB" && it_psql -d "$FRESH_DB" -c "CREATE EXTENSION nnpg"; } ||
	{ it_fail "could not create $FRESH_DB with the extension"; it_finish; }
it_check_eq "$IT_DB starts at 0.1.0" "$(extversion)" 0.1.0
it_check_eq "CREATE EXTENSION nnpg in $FRESH_DB installs 0.2.0" "$(extversion "$FRESH_DB")" 0.2.0
it_expect_value 0.1.0--0.2.0 "the update from 0.1.0 runs nnpg--0.1.0--0.2.0.sql" -- \
	"SELECT path FROM pg_extension_update_paths('nnpg')
	 WHERE source = '0.1.0' AND target = '0.2.0'"

# ---------- models stored under 0.1.0 ----------

# Training data in schema it (left out of the dump comparison), computed
# from the row number alone.
it_psql -c "CREATE SCHEMA it" -c "
CREATE TABLE it.img AS	-- 8x8 images, 3 classes
SELECT i AS id, i % 3 AS y,
       ARRAY(SELECT (0.5 + 0.5 * sin(i * 0.37 + j * (1 + i % 3) * 0.21))::real
             FROM generate_series(1, 64) AS j) AS x
FROM generate_series(1, 240) AS i" -c "
CREATE TABLE it.seq AS	-- 6 timesteps of 4 features, 2 classes
SELECT i AS id, i % 2 AS y,
       ARRAY(SELECT sin(i * 0.11 + j * 0.5 * (1 + i % 2))::real
             FROM generate_series(1, 24) AS j) AS x
FROM generate_series(1, 200) AS i" -c "
CREATE TABLE it.tab AS	-- 3 features of different scales, a regression target
SELECT i AS id, ARRAY[100 + 10 * sin(i), 5 * cos(i * 0.7), 0.01 * (i % 17)]::real[] AS x,
       (2 * sin(i) - cos(i * 0.7) + 0.3 * (i % 17) / 17.0)::real AS y
FROM generate_series(1, 200) AS i" >/dev/null ||
	{ it_fail "could not create the training data"; it_finish; }

# Three kinds of model; each has a twin NAME_ref built from the same seed.
KINDS=(cnn lstm mlp)
declare -A LAYERS DATA EPOCHS INPUT
LAYERS[cnn]='[{"type": "reshape", "shape": [8, 8, 1]},
 {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
 {"type": "maxpool2d", "pool_size": 2}, {"type": "flatten"},
 {"type": "dense", "units": 3, "activation": "softmax"}]'
LAYERS[lstm]='[{"type": "reshape", "shape": [6, 4]}, {"type": "lstm", "units": 8},
 {"type": "dense", "units": 2, "activation": "softmax"}]'
LAYERS[mlp]='[{"type": "normalize"}, {"type": "dense", "units": 8, "activation": "tanh"},
 {"type": "dense", "units": 1}]'
DATA=([cnn]=img [lstm]=seq [mlp]=tab)
EPOCHS=([cnn]=3 [lstm]=2 [mlp]=3)
INPUT=([cnn]=64 [lstm]=24 [mlp]=3)

# fit_sql MODEL EPOCHS [MORE ARGS]: a repeatable Adam fit without shuffling,
# so E epochs in one call and E-1 followed by 1 more in another are the same
# steps, if the second call continues the optimizer state.
fit_sql() {
	echo "SELECT epoch, loss FROM nn_fit('$1', 'SELECT x, y FROM it.${DATA[${1%_ref}]} ORDER BY id',
		epochs => $2, batch_size => 16, optimizer => 'adam', learning_rate => 0.01,
		shuffle => false, seed => 5, verbose => false${3:+, $3})"
}

for k in "${KINDS[@]}"; do
	e=${EPOCHS[$k]}
	for m in "$k" "${k}_ref"; do
		it_psql -c "SELECT nn_create('$m', '${LAYERS[$k]}',
			input_shape => '{${INPUT[$k]}}', seed => 11)" >/dev/null ||
			it_fail "nn_create('$m') under 0.1.0"
	done
	# The model is trained one epoch short; its twin the whole way.
	it_expect_value $((e - 1)) "under 0.1.0, $k trains $((e - 1)) epoch(s) with Adam" -- \
		"SELECT count(*) FROM ($(fit_sql "$k" $((e - 1)))) AS f"
	it_expect_value "$e" "under 0.1.0, ${k}_ref trains $e epoch(s) with Adam" -- \
		"SELECT count(*) FROM ($(fit_sql "${k}_ref" "$e")) AS f"
done

# The compat fixtures as rows of it.cx: model, batch (1: 7 rows predicted
# together, 2: one row), row, and inputs and outputs as hex bit patterns
# (format: test/fixtures/make_compat.c); the bytes as rows of it.cxbin.
compat_rows() {
	awk '
	$1 == "model" { model = $2; batch = 0 }
	$1 == "batch" { batch++; nx = 0; ny = 0; next }
	$1 == "targets" { batch = -1; next }
	$1 == "x" && batch > 0 { $1 = ""; sub(/^ /, ""); gsub(/ /, ","); x[++nx] = $0 }
	$1 == "y" && batch > 0 {
		$1 = ""; sub(/^ /, ""); gsub(/ /, ",")
		ny++
		printf "%s\t%d\t%d\t{%s}\t{%s}\n", model, batch, ny, x[ny], $0
	}' "$COMPAT"/*.txt
}
compat_bins() {
	local f
	for f in "$COMPAT"/*.bin; do
		printf '%s\t\\\\x%s\n' "$(basename "$f" .bin)" "$(od -An -v -tx1 "$f" | tr -d ' \n')"
	done
}
COMPAT_NAMES=()
for f in "$COMPAT"/*.bin; do
	COMPAT_NAMES+=("$(basename "$f" .bin)")
done
{
	echo "CREATE TABLE it.cx (model text, batch int, row int, xh text[], yh text[]);"
	echo "CREATE TABLE it.cxbin (model text, data bytea);"
	echo "COPY it.cx FROM STDIN;"
	compat_rows
	echo '\.'
	echo "COPY it.cxbin FROM STDIN;"
	compat_bins
	echo '\.'
	# The inputs as real[]: bits to sign, exponent and mantissa, exactly.
	echo "ALTER TABLE it.cx ADD COLUMN x real[];
UPDATE it.cx SET x = (
	SELECT array_agg((CASE WHEN e = 0 THEN m * 2::float8 ^ -149
	                       ELSE (m + 8388608) * 2::float8 ^ (e - 150) END
	                  * CASE WHEN b < 0 THEN -1 ELSE 1 END)::real ORDER BY k)
	FROM unnest(xh) WITH ORDINALITY AS u(h, k),
	     LATERAL (SELECT ('x' || h)::bit(32)::int AS b) AS bits,
	     LATERAL (SELECT (b >> 23) & 255 AS e, b & 8388607 AS m) AS parts);"
} | it_psql >/dev/null || { it_fail "could not load the compat fixtures"; it_finish; }
it_expect_value "${#COMPAT_NAMES[@]} $((8 * ${#COMPAT_NAMES[@]})) true" \
	"the compat fixtures: 8 rows each, every input converted to exactly its bits" -- \
	"SELECT count(DISTINCT model) || ' ' || count(*) || ' ' ||
	        bool_and($(hexes x) = xh::text)
	 FROM it.cx"
it_expect_value "${#COMPAT_NAMES[@]}" "under 0.1.0, nn_import takes every 0.1.0 core's model bytes" -- \
	"SELECT count(nn_import('compat_' || model, data)) FROM it.cxbin"

# compat_check WHEN: each imported model predicts what its fixture expects,
# the 7 rows through nn_predict_batch (one batch), the single row through
# nn_predict; and exports the bytes it was given.
compat_predict_sql() {
	echo "SELECT 1, p.id, $(hexes p.prediction)
	FROM nn_predict_batch('compat_$1',
		'SELECT row, x FROM it.cx WHERE model = ''$1'' AND batch = 1 ORDER BY row') AS p
	UNION ALL
	SELECT batch, row, $(hexes "nn_predict('compat_$1', x)")
	FROM it.cx WHERE model = '$1' AND batch = 2
	ORDER BY 1, 2"
}
compat_check() {
	local c
	for c in "${COMPAT_NAMES[@]}"; do
		it_same "$1, compat_$c predicts bit for bit what the 0.1.0 core did" \
			"$(it_psql -F ' ' -c "$(compat_predict_sql "$c")")" \
			"$(it_psql -F ' ' -c "SELECT batch, row, yh::text FROM it.cx
				WHERE model = '$c' ORDER BY 1, 2")"
	done
	it_expect_value "${#COMPAT_NAMES[@]}" "$1, nn_export gives back every compat model's bytes" -- \
		"SELECT count(*) FROM it.cxbin WHERE nn_export('compat_' || model) = data"
}
compat_check "under 0.1.0"

# ---------- the catalog of the extension's objects ----------

# One line per fact: object, key, value (newlines and tabs escaped). The
# objects are the members of the extension, named by pg_identify_object,
# and relations and functions in its schemas that are not members.
# attoptions leave out pg_attver, which some server builds put on every
# column with a value that differs from one table creation to the next.
CATALOG_SQL=$(cat <<'EOF'
WITH ext AS (
	SELECT e.oid FROM pg_extension e WHERE e.extname = 'nnpg'
), mem AS (
	SELECT d.classid, d.objid, d.objsubid, o.type || ' ' || o.identity AS obj
	FROM pg_depend d JOIN ext ON d.refobjid = ext.oid,
		LATERAL pg_identify_object(d.classid, d.objid, d.objsubid) AS o
	WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
), rel AS (
	SELECT m.obj, c.*
	FROM mem m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
), facts(obj, key, val) AS (
	SELECT 'extension nnpg', kv.k, kv.v
	FROM pg_extension e JOIN ext ON e.oid = ext.oid, LATERAL (VALUES
		('version', e.extversion),
		('owner', e.extowner::regrole::text),
		('schema', e.extnamespace::regnamespace::text),
		('relocatable', e.extrelocatable::text),
		('config', e.extconfig::regclass[]::text),
		('condition', e.extcondition::text),
		('comment', obj_description(e.oid, 'pg_extension'))) AS kv(k, v)
	-- every member, with its comment, initial privileges and labels
	UNION ALL
	SELECT m.obj, 'member', pg_describe_object(m.classid, m.objid, m.objsubid)
	FROM mem m
	UNION ALL
	SELECT m.obj, 'comment', d.description
	FROM mem m JOIN pg_description d
		ON d.classoid = m.classid AND d.objoid = m.objid AND d.objsubid = 0
	UNION ALL
	SELECT m.obj, 'initprivs ' || i.objsubid || ' ' || i.privtype::text, i.initprivs::text
	FROM mem m JOIN pg_init_privs i ON i.classoid = m.classid AND i.objoid = m.objid
	UNION ALL
	SELECT m.obj, 'seclabel ' || s.provider || ' ' || s.objsubid, s.label
	FROM mem m JOIN pg_seclabel s ON s.classoid = m.classid AND s.objoid = m.objid
	-- functions
	UNION ALL
	SELECT m.obj, kv.k, kv.v
	FROM mem m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid,
	LATERAL (VALUES
		('arguments', pg_get_function_arguments(p.oid)),
		('result', pg_get_function_result(p.oid)),
		('kind', p.prokind::text),
		('language', (SELECT l.lanname::text FROM pg_language l WHERE l.oid = p.prolang)),
		('prosrc', p.prosrc),
		('probin', p.probin),
		('volatility', p.provolatile::text),
		('parallel', p.proparallel::text),
		('security_definer', p.prosecdef::text),
		('strict', p.proisstrict::text),
		('leakproof', p.proleakproof::text),
		('returns_set', p.proretset::text),
		('cost', p.procost::text),
		('rows', p.prorows::text),
		('config', p.proconfig::text),
		('support', p.prosupport::regproc::text),
		('owner', p.proowner::regrole::text),
		('acl', p.proacl::text)) AS kv(k, v)
	-- tables and views: their columns, constraints, indexes, policies,
	-- triggers and rules
	UNION ALL
	SELECT r.obj, kv.k, kv.v
	FROM rel r, LATERAL (VALUES
		('kind', r.relkind::text),
		('persistence', r.relpersistence::text),
		('owner', r.relowner::regrole::text),
		('acl', r.relacl::text),
		('reloptions', r.reloptions::text),
		('row_security', r.relrowsecurity::text),
		('force_row_security', r.relforcerowsecurity::text),
		('replica_identity', r.relreplident::text),
		('access_method', (SELECT a.amname::text FROM pg_am a WHERE a.oid = r.relam)),
		('toast_reloptions', (SELECT t.reloptions::text FROM pg_class t WHERE t.oid = r.reltoastrelid)),
		('viewdef', CASE WHEN r.relkind IN ('v', 'm') THEN pg_get_viewdef(r.oid) END)) AS kv(k, v)
	UNION ALL
	SELECT r.obj, 'column ' || a.attnum || ' ' || a.attname,
		format('type=%s notnull=%s default=%s storage=%s compression=%s collation=%s identity=%s generated=%s options=%s acl=%s comment=%s',
			format_type(a.atttypid, a.atttypmod), a.attnotnull,
			pg_get_expr(ad.adbin, ad.adrelid), a.attstorage, a.attcompression,
			a.attcollation::regcollation, a.attidentity, a.attgenerated,
			(SELECT array_agg(o ORDER BY o) FROM unnest(a.attoptions) AS o
			 WHERE o NOT LIKE 'pg\_attver=%'),
			a.attacl, col_description(a.attrelid, a.attnum))
	FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid
		LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	WHERE a.attnum > 0 AND NOT a.attisdropped
	UNION ALL
	SELECT r.obj, 'constraint ' || co.conname,
		pg_get_constraintdef(co.oid) || ' deferrable=' || co.condeferrable
	FROM rel r JOIN pg_constraint co ON co.conrelid = r.oid
	UNION ALL
	SELECT r.obj, 'index ' || ic.relname, pg_get_indexdef(i.indexrelid)
	FROM rel r JOIN pg_index i ON i.indrelid = r.oid
		JOIN pg_class ic ON ic.oid = i.indexrelid
	UNION ALL
	SELECT r.obj, 'policy ' || po.polname,
		format('cmd=%s permissive=%s roles=%s using=%s check=%s',
			po.polcmd, po.polpermissive,
			(SELECT array_agg(CASE WHEN x.role = 0 THEN 'public'
			                       ELSE x.role::regrole::text END ORDER BY 1)
			 FROM unnest(po.polroles) AS x(role)),
			pg_get_expr(po.polqual, po.polrelid),
			pg_get_expr(po.polwithcheck, po.polrelid))
	FROM rel r JOIN pg_policy po ON po.polrelid = r.oid
	UNION ALL
	SELECT r.obj, 'trigger ' || t.tgname, pg_get_triggerdef(t.oid)
	FROM rel r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
	UNION ALL
	SELECT r.obj, 'rule ' || ru.rulename, pg_get_ruledef(ru.oid)
	FROM rel r JOIN pg_rewrite ru ON ru.ev_class = r.oid AND ru.rulename <> '_RETURN'
	-- schemas and types
	UNION ALL
	SELECT m.obj, kv.k, kv.v
	FROM mem m JOIN pg_namespace n
		ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid,
	LATERAL (VALUES ('owner', n.nspowner::regrole::text), ('acl', n.nspacl::text)) AS kv(k, v)
	UNION ALL
	SELECT m.obj, kv.k, kv.v
	FROM mem m JOIN pg_type ty ON m.classid = 'pg_type'::regclass AND ty.oid = m.objid,
	LATERAL (VALUES ('typtype', ty.typtype::text), ('owner', ty.typowner::regrole::text),
		('acl', ty.typacl::text), ('basetype', ty.typbasetype::regtype::text)) AS kv(k, v)
	-- relations and functions in the extension's schemas that are not members
	UNION ALL
	SELECT 'stray ' || pg_describe_object(s.classid, s.objid, 0), 'not a member', ''
	FROM (SELECT 'pg_class'::regclass, c.oid, c.relnamespace FROM pg_class c
	      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
	      UNION ALL
	      SELECT 'pg_proc'::regclass, p.oid, p.pronamespace FROM pg_proc p) AS s(classid, objid, nsp)
	WHERE s.nsp IN (SELECT m.objid FROM mem m WHERE m.classid = 'pg_namespace'::regclass)
	  AND NOT EXISTS (SELECT FROM mem m WHERE m.classid = s.classid AND m.objid = s.objid)
)
SELECT obj, key, replace(replace(coalesce(val, '<null>'), E'\n', '\n'), E'\t', '\t')
FROM facts
EOF
)

# catalog DB [SQL]: the sorted catalog facts of DB; SQL, when given, runs
# first in the same transaction, which is rolled back.
catalog() {
	it_psql -d "$1" -F $'\t' -c "BEGIN" ${2:+-c "$2"} -c "$CATALOG_SQL" -c "ROLLBACK" |
		LC_ALL=C sort
}

# catalog_diff A B LABEL_A LABEL_B: one line per object whose facts differ,
# "object<TAB>key (LABEL_A "value", LABEL_B "value"); ...".
catalog_diff() {
	LC_ALL=C comm -3 "$1" "$2" | awk -F '\t' -v la="$3" -v lb="$4" '
	{
		if ($1 == "") { side = "b"; obj = $2; key = $3; val = $4 }
		else { side = "a"; obj = $1; key = $2; val = $3 }
		if (!(obj in nkeys)) { objs[++n] = obj; nkeys[obj] = 0 }
		if (!((obj, key) in known)) { known[obj, key] = 1; keys[obj, ++nkeys[obj]] = key }
		if (length(val) > 70) val = substr(val, 1, 70) "..."
		v[side, obj, key] = "\"" val "\""
	}
	END {
		for (i = 1; i <= n; i++) {
			obj = objs[i]; line = ""
			for (j = 1; j <= nkeys[obj]; j++) {
				key = keys[obj, j]
				va = ((("a", obj, key) in v) ? v["a", obj, key] : "none")
				vb = ((("b", obj, key) in v) ? v["b", obj, key] : "none")
				line = line (j > 1 ? "; " : "") key " (" la " " va ", " lb " " vb ")"
			}
			print obj "\t" line
		}
	}'
}

# Before the update the comparison must tell 0.1.0 from 0.2.0.
if ! catalog "$IT_DB" >"$IT_TMP/cat.old" || ! catalog "$FRESH_DB" >"$IT_TMP/cat.fresh"; then
	it_fail "the catalog query failed"
fi
it_check "before the update, the catalog comparison tells 0.1.0 from a fresh 0.2.0" \
	grep -qE '^extension nnpg'$'\t''(.*; )?version \(0\.1\.0 "0\.1\.0", fresh "0\.2\.0"\)' \
	<(catalog_diff "$IT_TMP/cat.old" "$IT_TMP/cat.fresh" 0.1.0 fresh)

# ---------- what every model looks like, before and after ----------

# snapshot DIR: per model, files DIR/MODEL.{predict,history,models,rows,summary}.
snapshot() {
	local dir=$1 m t a predict=()
	mkdir -p "$dir"
	for m in "${KINDS[@]}" "${KINDS[@]/%/_ref}" "${COMPAT_NAMES[@]/#/compat_}"; do
		for a in predict history models rows summary; do
			: >"$dir/$m.$a"
		done
		t=${DATA[${m%_ref}]:-}
		if [ -n "$t" ]; then
			predict=(-c "SELECT v.version, d.id, nn_predict('$m', d.x, v.version)::text,
				nn_classify('$m', d.x, v.version)
			FROM it.$t AS d, (SELECT version FROM nnpg.models WHERE name = '$m') AS v
			WHERE d.id <= 3 ORDER BY 1, 2"
				-c "SELECT id, prediction::text, class FROM nn_predict_batch('$m',
				'SELECT id, x FROM it.$t WHERE id <= 20 ORDER BY id')")
		else
			predict=(-c "$(compat_predict_sql "${m#compat_}")")
		fi
		it_psql -F ' ' \
			-c '\echo @predict' "${predict[@]}" \
			-c '\echo @history' -c "SELECT * FROM nn_history('$m')" \
			-c '\echo @models' -c "SELECT name, version, created_at, owner, params, size_bytes,
				metrics, layers, training FROM nn_models WHERE name = '$m' ORDER BY version" \
			-c '\echo @rows' -c "SELECT version, md5(ROW(name, version, owner, created_at, layers,
				training, metrics, history, weights, params)::text) FROM nnpg.models AS m
				WHERE name = '$m' ORDER BY version" \
			-c '\echo @summary' -c "SELECT v.version, s.layer, s.type, s.output_shape, s.params
				FROM (SELECT version FROM nnpg.models WHERE name = '$m') AS v,
				     LATERAL nn_summary('$m', v.version) AS s ORDER BY 1, 2" \
			>"$dir/$m.out" || it_fail "snapshot of $m in $dir failed"
		awk -v p="$dir/$m." '/^@/ { f = p substr($0, 2); printf "" > f; next }
			{ print > f }' "$dir/$m.out"
	done
}
snapshot "$IT_TMP/before"

# ---------- the update ----------

# In a session that has cnn loaded in its model cache.
p1="SELECT nn_predict('cnn', x)::text FROM it.img WHERE id = 1"
out=$(it_psql -c "$p1" -c "ALTER EXTENSION nnpg UPDATE" -c "$p1")
it_check_eq "ALTER EXTENSION nnpg UPDATE succeeds" "$?" 0
it_check_eq "the extension is now 0.2.0" "$(extversion)" 0.2.0
it_same "the session that updated predicts with its cached cnn as before" \
	"$(sed -n 2p <<<"$out")" "$(sed -n 1p <<<"$out")"

snapshot "$IT_TMP/after"
for m in "${KINDS[@]}" "${KINDS[@]/%/_ref}" "${COMPAT_NAMES[@]/#/compat_}"; do
	bad=()
	for a in predict history models rows summary; do
		cmp -s "$IT_TMP/before/$m.$a" "$IT_TMP/after/$m.$a" || bad+=("$a")
		# A model's only empty aspect may be the history of an imported one.
		[ -s "$IT_TMP/before/$m.$a" ] || [ "$a.${m%%_*}" = history.compat ] || bad+=("$a(empty)")
	done
	if [ "${#bad[@]}" = 0 ]; then
		it_pass "$m: predictions (exact), nn_history, nn_models, rows and nn_summary unchanged by the update"
	else
		it_fail "$m: changed by the update: ${bad[*]} (diff: < before, > after)"
		for a in "${bad[@]}"; do
			diff "$IT_TMP/before/$m.${a%(*}" "$IT_TMP/after/$m.${a%(*}" | head -n 10 | sed "s/^/    | $a: /"
		done
	fi
done
compat_check "after the update"
it_expect_value "1 1" "after the update nn_summary says every layer with weights of cnn trains" -- \
	"SELECT bool_and(trainable OR trainable IS NULL)::int || ' ' || (count(trainable) > 0)::int
	 FROM nn_summary('cnn')"
it_expect_value "float32|0|0" "after the update every version is float32, and its sparsity is that of its bytes" -- \
	"SELECT DISTINCT format, sparsity, (sparsity IS DISTINCT FROM nnpg.model_sparsity(weights))::int
	 FROM nnpg.models WHERE weights IS NOT NULL"
it_expect_value 1 "after the update nn_create takes a base model" -- \
	"SELECT nn_create('cnn_head', '[{\"type\": \"dense\", \"units\": 2}]', base => 'cnn')"

# ---------- training continues from the stored state ----------

# A fit of 1 epoch from version 2 (E-1 epochs) must take the same steps as
# epoch E of the twin's single fit, which needs Adam's moments and step
# count from version 2: the same loss, the same weights.
pred() {	# pred MODEL [VERSION]: predictions on 5 rows of its data
	it_psql -c "SELECT nn_predict('$1', x${2:+, $2})::text
		FROM it.${DATA[${1%_ref}]} WHERE id <= 5 ORDER BY id"
}
for k in "${KINDS[@]}"; do
	e=${EPOCHS[$k]}
	out=$(it_psql -F ' ' -c "$(fit_sql "$k" 1)")
	it_check_eq "$k: nn_fit after the update runs 1 epoch" "${out%% *}" 1
	it_expect_value "3 from 2" "$k: it stores version 3, continued from version 2" -- \
		"SELECT version || ' from ' || (training ->> 'from_version')
		 FROM nnpg.models WHERE name = '$k' ORDER BY version DESC LIMIT 1"
	it_expect_value "3 1" "$k: version 3's history is its own epoch 1" -- \
		"SELECT version || ' ' || epoch FROM nn_history('$k', 3)"
	it_check_eq "$k: its loss equals epoch $e of ${k}_ref's uninterrupted fit" "${out#* }" \
		"$(it_psql -c "SELECT loss FROM nn_history('${k}_ref') WHERE epoch = $e")"
	it_same "$k: version 3 predicts exactly as ${k}_ref" "$(pred "$k")" "$(pred "${k}_ref")"
	it_expect_value t "$k: the continued epoch's loss is below version 2's first" -- \
		"SELECT (SELECT loss FROM nn_history('$k', 3) WHERE epoch = 1) <
		        (SELECT loss FROM nn_history('$k', 2) WHERE epoch = 1)"
done
# Control: the same epoch from version 2 with fresh optimizer state (AdamW
# without weight decay is Adam's step) ends elsewhere.
it_expect_value 1 "control: cnn trains 1 epoch from version 2 with fresh optimizer state" -- \
	"SELECT count(*) FROM ($(fit_sql cnn 1 "options => '{\"weight_decay\": 0}', version => 2" |
		sed "s/optimizer => 'adam'/optimizer => 'adamw'/")) AS f"
fresh_state=$(pred cnn 4)
if [ -n "$fresh_state" ] && [ "$fresh_state" != "$(pred cnn_ref)" ]; then
	it_pass "control: that version 4 predicts differently from cnn_ref"
else
	it_fail "control: version 4 (fresh optimizer state) predicts as cnn_ref: \"$fresh_state\""
fi
it_expect_value 1 "compat_cnn_adam (0.1.0 core, Adam state) trains after the update" -- \
	"SELECT count(*) FROM nn_fit('compat_cnn_adam', 'SELECT x, row % 4 FROM it.cx
		WHERE model = ''cnn_adam'' ORDER BY batch, row', epochs => 1, batch_size => 4,
		shuffle => false, seed => 5, verbose => false)"
it_check_eq "that stored its version 2" "$(it_versions compat_cnn_adam)" "2 2"

# ---------- a fresh and an upgraded installation have the same objects ----------

# dump DB: its schema as pg_dump writes it, with the database name and
# pg_dump's random \restrict key normalised.
dump() {
	"$PGBIN/pg_dump" --schema-only --exclude-schema=it -d "$1" |
		sed -E -e "s/\\b$1\\b/DBNAME/g" -e 's/^\\(un)?restrict .*/\\\1restrict KEY/'
}
dump "$IT_DB" >"$IT_TMP/dump.upgraded"
it_same "pg_dump --schema-only of the upgraded and the fresh database are the same" \
	"$(cat "$IT_TMP/dump.upgraded")" "$(dump "$FRESH_DB")"

catalog "$IT_DB" >"$IT_TMP/cat.upgraded" || it_fail "the catalog query failed"
diffs=$(catalog_diff "$IT_TMP/cat.upgraded" "$IT_TMP/cat.fresh" upgraded fresh)
if [ -z "$diffs" ] && [ -s "$IT_TMP/cat.fresh" ]; then
	it_pass "catalog: the $(grep -c $'\tmember\t' "$IT_TMP/cat.fresh") member objects ($(wc -l <"$IT_TMP/cat.fresh") facts) are the same in the upgraded and the fresh installation"
else
	[ -s "$IT_TMP/cat.fresh" ] || it_fail "catalog: no facts from $FRESH_DB"
	while IFS=$'\t' read -r obj detail; do
		[ -z "$obj" ] || it_fail "catalog: $obj differs between the upgraded and the fresh installation: $detail"
	done <<<"$diffs"
fi

# Controls: changes made in a rolled-back transaction of the upgraded
# database are each named against its own facts, and nothing else is.
mutate="CREATE FUNCTION public.it_extra() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER EXTENSION nnpg ADD FUNCTION public.it_extra();
ALTER FUNCTION public.nn_predict(text, real[], integer) VOLATILE;
COMMENT ON VIEW public.nn_models IS 'changed';
ALTER POLICY models_owner ON nnpg.models USING (true)"
it_check_eq "control: the catalog comparison names an added member, a volatility, a comment and a policy" \
	"$(catalog "$IT_DB" "$mutate" >"$IT_TMP/cat.mutated" &&
		catalog_diff "$IT_TMP/cat.mutated" "$IT_TMP/cat.upgraded" changed upgraded | cut -f1 | paste -sd '|')" \
	"function public.it_extra()|function public.nn_predict(pg_catalog.text,real[],integer)|table nnpg.models|view public.nn_models"
# A function left in the extension's schema without being a member.
it_psql -c "CREATE FUNCTION nnpg.it_stray() RETURNS int LANGUAGE sql AS 'SELECT 1'" >/dev/null
it_check "control: pg_dump shows a stray function in schema nnpg" \
	grep -q 'FUNCTION nnpg.it_stray()' <(diff <(dump "$IT_DB") "$IT_TMP/dump.upgraded")
it_check_eq "control: so does the catalog comparison" \
	"$(catalog "$IT_DB" >"$IT_TMP/cat.stray" &&
		catalog_diff "$IT_TMP/cat.stray" "$IT_TMP/cat.upgraded" changed upgraded | cut -f1)" \
	"stray function nnpg.it_stray()"
it_psql -c "DROP FUNCTION nnpg.it_stray()" >/dev/null

# ---------- updating 0.2.0 is a no-op ----------

for db in "$FRESH_DB" "$IT_DB"; do
	out=$(it_run_sql -d "$db" -- "ALTER EXTENSION nnpg UPDATE")
	case "$out" in
	*'NOTICE:  version "0.2.0" of extension "nnpg" is already installed'*'SQLSTATE 00000')
		it_pass "ALTER EXTENSION nnpg UPDATE in $db: version \"0.2.0\" is already installed" ;;
	*)
		it_fail "ALTER EXTENSION nnpg UPDATE in $db: no \"already installed\" NOTICE"
		printf '%s\n' "$out" | sed 's/^/    | /' ;;
	esac
done
it_same "the no-op updates changed no catalog fact (upgraded)" \
	"$(catalog "$IT_DB")" "$(cat "$IT_TMP/cat.upgraded")"
it_same "the no-op updates changed no catalog fact (fresh)" \
	"$(catalog "$FRESH_DB")" "$(cat "$IT_TMP/cat.fresh")"

it_finish
