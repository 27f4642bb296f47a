/* extension/nnpg--0.1.0--0.2.0.sql: upgrade of nnpg 0.1.0 to 0.2.0 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION nnpg UPDATE TO '0.2.0'" to load this file. \quit

/*
 * 0.2.0 keeps every object of 0.1.0 and the model bytes it stored, which
 * the 0.2.0 library reads, predicts with and trains further unchanged.
 * Objects that 0.2.0 adds are created here as nnpg--0.2.0.sql creates
 * them; test/integration/upgrade.sh checks that both give the same schema.
 */
