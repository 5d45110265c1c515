ALTER TABLE "lampposts" ADD COLUMN "cached_total_weight" BIGINT;
ALTER TABLE "lampposts" ADD COLUMN "total_weight_recalculation_needed" BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE "lampposts" ADD COLUMN "total_weight_recalculation_version" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "lampposts" ADD COLUMN "total_weight_stale_since" TIMESTAMPTZ DEFAULT now();
ALTER TABLE "lampposts" ADD COLUMN "total_weight_next_attempt_at" TIMESTAMPTZ;
ALTER TABLE "lampposts" ADD COLUMN "total_weight_attempts" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "lampposts" ADD COLUMN "total_weight_last_error" TEXT;
ALTER TABLE "lampposts" ADD COLUMN "cached_slow_full_name" TEXT;
ALTER TABLE "lampposts" ADD COLUMN "slow_full_name_recalculation_needed" BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE "lampposts" ADD COLUMN "slow_full_name_expires_after" TIMESTAMPTZ;
ALTER TABLE "lampposts" ADD COLUMN "slow_full_name_recalculation_version" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "lampposts" ADD COLUMN "slow_full_name_stale_since" TIMESTAMPTZ DEFAULT now();
ALTER TABLE "lampposts" ADD COLUMN "slow_full_name_next_attempt_at" TIMESTAMPTZ;
ALTER TABLE "lampposts" ADD COLUMN "slow_full_name_attempts" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "lampposts" ADD COLUMN "slow_full_name_last_error" TEXT;
CREATE INDEX IF NOT EXISTS "cf_lampposts_total_weight_recalculation_needed_due_696c572a97" ON "lampposts" ("total_weight_next_attempt_at" NULLS FIRST) WHERE "total_weight_recalculation_needed";
COMMENT ON INDEX "cf_lampposts_total_weight_recalculation_needed_due_696c572a97" IS 'cached-fields';
CREATE INDEX IF NOT EXISTS "cf_lampposts_slow_full_name_recalculation_needed_due_45af9b2367" ON "lampposts" ("slow_full_name_next_attempt_at" NULLS FIRST) WHERE "slow_full_name_recalculation_needed";
COMMENT ON INDEX "cf_lampposts_slow_full_name_recalculation_needed_due_45af9b2367" IS 'cached-fields';
CREATE INDEX IF NOT EXISTS "cf_lampposts_slow_full_name_expires_after_fa27c5cdbf" ON "lampposts" ("slow_full_name_expires_after") WHERE "slow_full_name_expires_after" IS NOT NULL;
COMMENT ON INDEX "cf_lampposts_slow_full_name_expires_after_fa27c5cdbf" IS 'cached-fields';
CREATE OR REPLACE FUNCTION "cf_bump_lampposts_total_weight_recalculation_needed_46efe3ec4b"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_bump_lampposts_total_weight_recalculation_needed_46efe3ec4b" BEFORE UPDATE OF "total_weight_recalculation_needed" ON "lampposts" FOR EACH ROW WHEN (NEW."total_weight_recalculation_needed") EXECUTE FUNCTION "cf_bump_lampposts_total_weight_recalculation_needed_46efe3ec4b"()
BEGIN
  NEW."total_weight_recalculation_needed" := TRUE;
  NEW."total_weight_recalculation_version" := OLD."total_weight_recalculation_version" + 1;
  IF NEW."total_weight_next_attempt_at" IS DISTINCT FROM OLD."total_weight_next_attempt_at" THEN
    NULL;
  ELSIF OLD."total_weight_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."total_weight_next_attempt_at" := NULL;
  ELSIF OLD."total_weight_recalculation_needed" AND OLD."total_weight_stale_since" IS NOT NULL THEN
    IF NEW."total_weight_next_attempt_at" IS NOT NULL THEN NEW."total_weight_next_attempt_at" := GREATEST(NEW."total_weight_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."total_weight_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."total_weight_next_attempt_at" - OLD."total_weight_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."total_weight_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."total_weight_next_attempt_at" := GREATEST(NEW."total_weight_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."total_weight_recalculation_needed" OR OLD."total_weight_stale_since" IS NULL THEN NEW."total_weight_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_bump_lampposts_total_weight_recalculation_needed_46efe3ec4b" BEFORE UPDATE OF "total_weight_recalculation_needed" ON "lampposts" FOR EACH ROW WHEN (NEW."total_weight_recalculation_needed") EXECUTE FUNCTION "cf_bump_lampposts_total_weight_recalculation_needed_46efe3ec4b"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_bump_lampposts_total_weight_recalculation_needed_46efe3ec4b";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_bump_lampposts_total_weight_recalculation_needed_46efe3ec4b', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_bump_lampposts_total_weight_recalculation_needed_46efe3ec4b' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_dep_lampposts_total_weight_06ea13b4ef"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_dep_lampposts_total_weight_06ea13b4ef" BEFORE UPDATE OF "weight" ON "lampposts" FOR EACH ROW WHEN (OLD."weight" IS DISTINCT FROM NEW."weight") EXECUTE FUNCTION "cf_dep_lampposts_total_weight_06ea13b4ef"()
BEGIN
  NEW."total_weight_recalculation_needed" := TRUE;
  NEW."total_weight_recalculation_version" := OLD."total_weight_recalculation_version" + 1;
  IF NEW."total_weight_next_attempt_at" IS DISTINCT FROM OLD."total_weight_next_attempt_at" THEN
    NULL;
  ELSIF OLD."total_weight_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."total_weight_next_attempt_at" := NULL;
  ELSIF OLD."total_weight_recalculation_needed" AND OLD."total_weight_stale_since" IS NOT NULL THEN
    IF NEW."total_weight_next_attempt_at" IS NOT NULL THEN NEW."total_weight_next_attempt_at" := GREATEST(NEW."total_weight_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."total_weight_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."total_weight_next_attempt_at" - OLD."total_weight_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."total_weight_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."total_weight_next_attempt_at" := GREATEST(NEW."total_weight_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."total_weight_recalculation_needed" OR OLD."total_weight_stale_since" IS NULL THEN NEW."total_weight_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_dep_lampposts_total_weight_06ea13b4ef" BEFORE UPDATE OF "weight" ON "lampposts" FOR EACH ROW WHEN (OLD."weight" IS DISTINCT FROM NEW."weight") EXECUTE FUNCTION "cf_dep_lampposts_total_weight_06ea13b4ef"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_dep_lampposts_total_weight_06ea13b4ef";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_dep_lampposts_total_weight_06ea13b4ef', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_dep_lampposts_total_weight_06ea13b4ef' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_ins_lampposts_total_weight_pigeons_lamppost_id_237e533adb"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_ins_lampposts_total_weight_pigeons_lamppost_id_237e533adb" AFTER INSERT ON "pigeons" REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_ins_lampposts_total_weight_pigeons_lamppost_id_237e533adb"()
BEGIN
  UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE WHERE "id" IN (SELECT "lamppost_id" FROM cf_rows);
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_ins_lampposts_total_weight_pigeons_lamppost_id_237e533adb" AFTER INSERT ON "pigeons" REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_ins_lampposts_total_weight_pigeons_lamppost_id_237e533adb"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_ins_lampposts_total_weight_pigeons_lamppost_id_237e533adb";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_ins_lampposts_total_weight_pigeons_lamppost_id_237e533adb', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_ins_lampposts_total_weight_pigeons_lamppost_id_237e533adb' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_del_lampposts_total_weight_pigeons_lamppost_id_8e56e95e4a"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_del_lampposts_total_weight_pigeons_lamppost_id_8e56e95e4a" AFTER DELETE ON "pigeons" REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_del_lampposts_total_weight_pigeons_lamppost_id_8e56e95e4a"()
BEGIN
  UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE WHERE "id" IN (SELECT "lamppost_id" FROM cf_rows);
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_del_lampposts_total_weight_pigeons_lamppost_id_8e56e95e4a" AFTER DELETE ON "pigeons" REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_del_lampposts_total_weight_pigeons_lamppost_id_8e56e95e4a"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_del_lampposts_total_weight_pigeons_lamppost_id_8e56e95e4a";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_del_lampposts_total_weight_pigeons_lamppost_id_8e56e95e4a', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_del_lampposts_total_weight_pigeons_lamppost_id_8e56e95e4a' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_upd_lampposts_total_weight_pigeons_lamppost_id_17e48e98c8"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_upd_lampposts_total_weight_pigeons_lamppost_id_17e48e98c8" AFTER UPDATE OF "weight", "lamppost_id" ON "pigeons" FOR EACH ROW WHEN (OLD."weight" IS DISTINCT FROM NEW."weight" OR OLD."lamppost_id" IS DISTINCT FROM NEW."lamppost_id") EXECUTE FUNCTION "cf_upd_lampposts_total_weight_pigeons_lamppost_id_17e48e98c8"()
BEGIN
  UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE WHERE "id" IN (OLD."lamppost_id", NEW."lamppost_id");
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_upd_lampposts_total_weight_pigeons_lamppost_id_17e48e98c8" AFTER UPDATE OF "weight", "lamppost_id" ON "pigeons" FOR EACH ROW WHEN (OLD."weight" IS DISTINCT FROM NEW."weight" OR OLD."lamppost_id" IS DISTINCT FROM NEW."lamppost_id") EXECUTE FUNCTION "cf_upd_lampposts_total_weight_pigeons_lamppost_id_17e48e98c8"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_upd_lampposts_total_weight_pigeons_lamppost_id_17e48e98c8";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_upd_lampposts_total_weight_pigeons_lamppost_id_17e48e98c8', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_upd_lampposts_total_weight_pigeons_lamppost_id_17e48e98c8' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_trunc_lampposts_total_weight_pigeons_lamppost_id_d7b6d96df5"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_trunc_lampposts_total_weight_pigeons_lamppost_id_d7b6d96df5" AFTER TRUNCATE ON "pigeons" FOR EACH STATEMENT EXECUTE FUNCTION "cf_trunc_lampposts_total_weight_pigeons_lamppost_id_d7b6d96df5"()
BEGIN
  UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE;
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_trunc_lampposts_total_weight_pigeons_lamppost_id_d7b6d96df5" AFTER TRUNCATE ON "pigeons" FOR EACH STATEMENT EXECUTE FUNCTION "cf_trunc_lampposts_total_weight_pigeons_lamppost_id_d7b6d96df5"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_trunc_lampposts_total_weight_pigeons_lamppost_id_d7b6d96df5";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_trunc_lampposts_total_weight_pigeons_lamppost_id_d7b6d96df5', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_trunc_lampposts_total_weight_pigeons_lamppost_id_d7b6d96df5' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_bump_lampposts_slow_full_name_recalculation_neede_1ac53f86ab"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_bump_lampposts_slow_full_name_recalculation_neede_1ac53f86ab" BEFORE UPDATE OF "slow_full_name_recalculation_needed" ON "lampposts" FOR EACH ROW WHEN (NEW."slow_full_name_recalculation_needed") EXECUTE FUNCTION "cf_bump_lampposts_slow_full_name_recalculation_neede_1ac53f86ab"()
BEGIN
  NEW."slow_full_name_recalculation_needed" := TRUE;
  NEW."slow_full_name_recalculation_version" := OLD."slow_full_name_recalculation_version" + 1;
  IF NEW."slow_full_name_next_attempt_at" IS DISTINCT FROM OLD."slow_full_name_next_attempt_at" THEN
    NULL;
  ELSIF OLD."slow_full_name_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."slow_full_name_next_attempt_at" := NULL;
  ELSIF OLD."slow_full_name_recalculation_needed" AND OLD."slow_full_name_stale_since" IS NOT NULL THEN
    IF NEW."slow_full_name_next_attempt_at" IS NOT NULL THEN NEW."slow_full_name_next_attempt_at" := GREATEST(NEW."slow_full_name_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."slow_full_name_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."slow_full_name_next_attempt_at" - OLD."slow_full_name_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."slow_full_name_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."slow_full_name_next_attempt_at" := GREATEST(NEW."slow_full_name_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."slow_full_name_recalculation_needed" OR OLD."slow_full_name_stale_since" IS NULL THEN NEW."slow_full_name_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_bump_lampposts_slow_full_name_recalculation_neede_1ac53f86ab" BEFORE UPDATE OF "slow_full_name_recalculation_needed" ON "lampposts" FOR EACH ROW WHEN (NEW."slow_full_name_recalculation_needed") EXECUTE FUNCTION "cf_bump_lampposts_slow_full_name_recalculation_neede_1ac53f86ab"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_bump_lampposts_slow_full_name_recalculation_neede_1ac53f86ab";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_bump_lampposts_slow_full_name_recalculation_neede_1ac53f86ab', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_bump_lampposts_slow_full_name_recalculation_neede_1ac53f86ab' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_dep_lampposts_slow_full_name_b1f408309b"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_dep_lampposts_slow_full_name_b1f408309b" BEFORE UPDATE OF "first_name", "country", "cached_total_weight" ON "lampposts" FOR EACH ROW WHEN (OLD."first_name" IS DISTINCT FROM NEW."first_name" OR OLD."country" IS DISTINCT FROM NEW."country" OR OLD."cached_total_weight" IS DISTINCT FROM NEW."cached_total_weight") EXECUTE FUNCTION "cf_dep_lampposts_slow_full_name_b1f408309b"()
BEGIN
  NEW."slow_full_name_recalculation_needed" := TRUE;
  NEW."slow_full_name_recalculation_version" := OLD."slow_full_name_recalculation_version" + 1;
  IF NEW."slow_full_name_next_attempt_at" IS DISTINCT FROM OLD."slow_full_name_next_attempt_at" THEN
    NULL;
  ELSIF OLD."slow_full_name_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."slow_full_name_next_attempt_at" := NULL;
  ELSIF OLD."slow_full_name_recalculation_needed" AND OLD."slow_full_name_stale_since" IS NOT NULL THEN
    IF NEW."slow_full_name_next_attempt_at" IS NOT NULL THEN NEW."slow_full_name_next_attempt_at" := GREATEST(NEW."slow_full_name_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."slow_full_name_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."slow_full_name_next_attempt_at" - OLD."slow_full_name_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."slow_full_name_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."slow_full_name_next_attempt_at" := GREATEST(NEW."slow_full_name_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."slow_full_name_recalculation_needed" OR OLD."slow_full_name_stale_since" IS NULL THEN NEW."slow_full_name_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_dep_lampposts_slow_full_name_b1f408309b" BEFORE UPDATE OF "first_name", "country", "cached_total_weight" ON "lampposts" FOR EACH ROW WHEN (OLD."first_name" IS DISTINCT FROM NEW."first_name" OR OLD."country" IS DISTINCT FROM NEW."country" OR OLD."cached_total_weight" IS DISTINCT FROM NEW."cached_total_weight") EXECUTE FUNCTION "cf_dep_lampposts_slow_full_name_b1f408309b"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_dep_lampposts_slow_full_name_b1f408309b";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_dep_lampposts_slow_full_name_b1f408309b', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_dep_lampposts_slow_full_name_b1f408309b' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_guard_lampposts_2c6c678be9_values_998883c036"(o anyelement, n anyelement) RETURNS boolean[] LANGUAGE sql STABLE STRICT AS $cf$ SELECT ARRAY[o."cached_total_weight" IS DISTINCT FROM n."cached_total_weight", o."cached_slow_full_name" IS DISTINCT FROM n."cached_slow_full_name"] $cf$;
CREATE OR REPLACE FUNCTION "cf_guard_lampposts_2c6c678be9"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_guard_lampposts_2c6c678be9" BEFORE UPDATE ON "lampposts" FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND current_setting('cached_fields.worker', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION "cf_guard_lampposts_2c6c678be9"()
DECLARE cf_changed boolean[];
BEGIN
  -- "cf_guard_lampposts_2c6c678be9_values_998883c036": o."cached_total_weight" IS DISTINCT FROM n."cached_total_weight", o."cached_slow_full_name" IS DISTINCT FROM n."cached_slow_full_name"
  IF NOT NEW."total_weight_recalculation_needed" AND NEW."total_weight_recalculation_version" IS DISTINCT FROM OLD."total_weight_recalculation_version" + 1 THEN
    IF NOT OLD."total_weight_recalculation_needed" AND cf_changed IS NULL THEN
      BEGIN cf_changed := ARRAY[OLD."cached_total_weight" IS DISTINCT FROM NEW."cached_total_weight", OLD."cached_slow_full_name" IS DISTINCT FROM NEW."cached_slow_full_name"];
      EXCEPTION WHEN datatype_mismatch THEN cf_changed := "cf_guard_lampposts_2c6c678be9_values_998883c036"(OLD, NEW);
      END;
    END IF;
    IF OLD."total_weight_recalculation_needed" OR cf_changed[1] THEN
    NEW."total_weight_stale_since" := OLD."total_weight_stale_since";
    NEW."total_weight_next_attempt_at" := OLD."total_weight_next_attempt_at";
    NEW."total_weight_attempts" := OLD."total_weight_attempts";
    NEW."total_weight_last_error" := OLD."total_weight_last_error";
    NEW."total_weight_recalculation_needed" := TRUE;
  NEW."total_weight_recalculation_version" := OLD."total_weight_recalculation_version" + 1;
  IF NEW."total_weight_next_attempt_at" IS DISTINCT FROM OLD."total_weight_next_attempt_at" THEN
    NULL;
  ELSIF OLD."total_weight_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."total_weight_next_attempt_at" := NULL;
  ELSIF OLD."total_weight_recalculation_needed" AND OLD."total_weight_stale_since" IS NOT NULL THEN
    IF NEW."total_weight_next_attempt_at" IS NOT NULL THEN NEW."total_weight_next_attempt_at" := GREATEST(NEW."total_weight_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."total_weight_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."total_weight_next_attempt_at" - OLD."total_weight_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."total_weight_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."total_weight_next_attempt_at" := GREATEST(NEW."total_weight_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."total_weight_recalculation_needed" OR OLD."total_weight_stale_since" IS NULL THEN NEW."total_weight_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
    END IF;
  END IF;
  IF NOT NEW."slow_full_name_recalculation_needed" AND NEW."slow_full_name_recalculation_version" IS DISTINCT FROM OLD."slow_full_name_recalculation_version" + 1 THEN
    IF NOT OLD."slow_full_name_recalculation_needed" AND cf_changed IS NULL THEN
      BEGIN cf_changed := ARRAY[OLD."cached_total_weight" IS DISTINCT FROM NEW."cached_total_weight", OLD."cached_slow_full_name" IS DISTINCT FROM NEW."cached_slow_full_name"];
      EXCEPTION WHEN datatype_mismatch THEN cf_changed := "cf_guard_lampposts_2c6c678be9_values_998883c036"(OLD, NEW);
      END;
    END IF;
    IF OLD."slow_full_name_recalculation_needed" OR cf_changed[2] THEN
    NEW."slow_full_name_stale_since" := OLD."slow_full_name_stale_since";
    NEW."slow_full_name_next_attempt_at" := OLD."slow_full_name_next_attempt_at";
    NEW."slow_full_name_attempts" := OLD."slow_full_name_attempts";
    NEW."slow_full_name_last_error" := OLD."slow_full_name_last_error";
    NEW."slow_full_name_recalculation_needed" := TRUE;
  NEW."slow_full_name_recalculation_version" := OLD."slow_full_name_recalculation_version" + 1;
  IF NEW."slow_full_name_next_attempt_at" IS DISTINCT FROM OLD."slow_full_name_next_attempt_at" THEN
    NULL;
  ELSIF OLD."slow_full_name_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."slow_full_name_next_attempt_at" := NULL;
  ELSIF OLD."slow_full_name_recalculation_needed" AND OLD."slow_full_name_stale_since" IS NOT NULL THEN
    IF NEW."slow_full_name_next_attempt_at" IS NOT NULL THEN NEW."slow_full_name_next_attempt_at" := GREATEST(NEW."slow_full_name_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."slow_full_name_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."slow_full_name_next_attempt_at" - OLD."slow_full_name_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."slow_full_name_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."slow_full_name_next_attempt_at" := GREATEST(NEW."slow_full_name_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."slow_full_name_recalculation_needed" OR OLD."slow_full_name_stale_since" IS NULL THEN NEW."slow_full_name_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
    END IF;
  END IF;
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_guard_lampposts_2c6c678be9" BEFORE UPDATE ON "lampposts" FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND current_setting('cached_fields.worker', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION "cf_guard_lampposts_2c6c678be9"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_guard_lampposts_2c6c678be9";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_guard_lampposts_2c6c678be9', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_guard_lampposts_2c6c678be9' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_insert_lampposts_1710cfc283"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_insert_lampposts_1710cfc283" BEFORE INSERT ON "lampposts" FOR EACH ROW EXECUTE FUNCTION "cf_insert_lampposts_1710cfc283"()
BEGIN
  NEW."total_weight_recalculation_needed" := TRUE;
  NEW."total_weight_recalculation_version" := GREATEST(COALESCE(NEW."total_weight_recalculation_version", 0) + 1, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT));
  NEW."total_weight_stale_since" := clock_timestamp();
  NEW."total_weight_next_attempt_at" := NULL;
  NEW."total_weight_attempts" := 0;
  NEW."total_weight_last_error" := NULL;
  NEW."slow_full_name_recalculation_needed" := TRUE;
  NEW."slow_full_name_recalculation_version" := GREATEST(COALESCE(NEW."slow_full_name_recalculation_version", 0) + 1, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT));
  NEW."slow_full_name_stale_since" := clock_timestamp();
  NEW."slow_full_name_next_attempt_at" := NULL;
  NEW."slow_full_name_attempts" := 0;
  NEW."slow_full_name_last_error" := NULL;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_insert_lampposts_1710cfc283" BEFORE INSERT ON "lampposts" FOR EACH ROW EXECUTE FUNCTION "cf_insert_lampposts_1710cfc283"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_insert_lampposts_1710cfc283";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_insert_lampposts_1710cfc283', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_insert_lampposts_1710cfc283' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
