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
ALTER TABLE "streets" ADD COLUMN "cached_pigeon_weight" BIGINT;
ALTER TABLE "streets" ADD COLUMN "pigeon_weight_recalculation_needed" BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE "streets" ADD COLUMN "pigeon_weight_recalculation_version" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "streets" ADD COLUMN "pigeon_weight_stale_since" TIMESTAMPTZ DEFAULT now();
ALTER TABLE "streets" ADD COLUMN "pigeon_weight_next_attempt_at" TIMESTAMPTZ;
ALTER TABLE "streets" ADD COLUMN "pigeon_weight_attempts" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "streets" ADD COLUMN "pigeon_weight_last_error" TEXT;
ALTER TABLE "streets" ADD COLUMN "cached_heaviest" BIGINT;
ALTER TABLE "streets" ADD COLUMN "heaviest_recalculation_needed" BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE "streets" ADD COLUMN "heaviest_recalculation_version" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "streets" ADD COLUMN "heaviest_stale_since" TIMESTAMPTZ DEFAULT now();
ALTER TABLE "streets" ADD COLUMN "heaviest_next_attempt_at" TIMESTAMPTZ;
ALTER TABLE "streets" ADD COLUMN "heaviest_attempts" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "streets" ADD COLUMN "heaviest_last_error" TEXT;
ALTER TABLE "pigeons" ADD COLUMN "cached_perch" TEXT;
ALTER TABLE "pigeons" ADD COLUMN "perch_recalculation_needed" BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE "pigeons" ADD COLUMN "perch_recalculation_version" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "pigeons" ADD COLUMN "perch_stale_since" TIMESTAMPTZ DEFAULT now();
ALTER TABLE "pigeons" ADD COLUMN "perch_next_attempt_at" TIMESTAMPTZ;
ALTER TABLE "pigeons" ADD COLUMN "perch_attempts" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "pigeons" ADD COLUMN "perch_last_error" TEXT;
CREATE INDEX IF NOT EXISTS "cf_lampposts_total_weight_recalculation_needed_queue_0ddd2aa9a8" ON "lampposts" ("total_weight_next_attempt_at" NULLS FIRST, "total_weight_stale_since", "id") WHERE "total_weight_recalculation_needed";
COMMENT ON INDEX "cf_lampposts_total_weight_recalculation_needed_queue_0ddd2aa9a8" IS 'cached-fields';
CREATE INDEX IF NOT EXISTS "cf_lampposts_slow_full_name_recalculation_needed_que_6f3c3cccf8" ON "lampposts" ("slow_full_name_next_attempt_at" NULLS FIRST, "slow_full_name_stale_since", "id") WHERE "slow_full_name_recalculation_needed";
COMMENT ON INDEX "cf_lampposts_slow_full_name_recalculation_needed_que_6f3c3cccf8" IS 'cached-fields';
CREATE INDEX IF NOT EXISTS "cf_lampposts_slow_full_name_expires_after_fa27c5cdbf" ON "lampposts" ("slow_full_name_expires_after") WHERE "slow_full_name_expires_after" IS NOT NULL;
COMMENT ON INDEX "cf_lampposts_slow_full_name_expires_after_fa27c5cdbf" IS 'cached-fields';
CREATE INDEX IF NOT EXISTS "cf_streets_pigeon_weight_recalculation_needed_queue_5ebc1421a7" ON "streets" ("pigeon_weight_next_attempt_at" NULLS FIRST, "pigeon_weight_stale_since", "id") WHERE "pigeon_weight_recalculation_needed";
COMMENT ON INDEX "cf_streets_pigeon_weight_recalculation_needed_queue_5ebc1421a7" IS 'cached-fields';
CREATE INDEX IF NOT EXISTS "cf_streets_heaviest_recalculation_needed_queue_42ccaa5331" ON "streets" ("heaviest_next_attempt_at" NULLS FIRST, "heaviest_stale_since", "id") WHERE "heaviest_recalculation_needed";
COMMENT ON INDEX "cf_streets_heaviest_recalculation_needed_queue_42ccaa5331" IS 'cached-fields';
CREATE INDEX IF NOT EXISTS "cf_pigeons_perch_recalculation_needed_queue_7be67f7033" ON "pigeons" ("perch_next_attempt_at" NULLS FIRST, "perch_stale_since", "id") WHERE "perch_recalculation_needed";
COMMENT ON INDEX "cf_pigeons_perch_recalculation_needed_queue_7be67f7033" IS 'cached-fields';
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
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_dep_lampposts_total_weight_06ea13b4ef" BEFORE UPDATE OF "weight" ON "lampposts" FOR EACH ROW WHEN ((OLD."weight" IS DISTINCT FROM NEW."weight") AND NOT (NEW."total_weight_recalculation_version" = OLD."total_weight_recalculation_version" + 1 AND NOT NEW."total_weight_recalculation_needed")) EXECUTE FUNCTION "cf_dep_lampposts_total_weight_06ea13b4ef"()
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
CREATE OR REPLACE TRIGGER "cf_dep_lampposts_total_weight_06ea13b4ef" BEFORE UPDATE OF "weight" ON "lampposts" FOR EACH ROW WHEN ((OLD."weight" IS DISTINCT FROM NEW."weight") AND NOT (NEW."total_weight_recalculation_version" = OLD."total_weight_recalculation_version" + 1 AND NOT NEW."total_weight_recalculation_needed")) EXECUTE FUNCTION "cf_dep_lampposts_total_weight_06ea13b4ef"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_dep_lampposts_total_weight_06ea13b4ef";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_dep_lampposts_total_weight_06ea13b4ef', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_dep_lampposts_total_weight_06ea13b4ef' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
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
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_dep_lampposts_slow_full_name_b1f408309b" BEFORE UPDATE OF "first_name", "country", "cached_total_weight" ON "lampposts" FOR EACH ROW WHEN ((OLD."first_name" IS DISTINCT FROM NEW."first_name" OR OLD."country" IS DISTINCT FROM NEW."country" OR OLD."cached_total_weight" IS DISTINCT FROM NEW."cached_total_weight") AND NOT (NEW."slow_full_name_recalculation_version" = OLD."slow_full_name_recalculation_version" + 1 AND NOT NEW."slow_full_name_recalculation_needed")) EXECUTE FUNCTION "cf_dep_lampposts_slow_full_name_b1f408309b"()
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
CREATE OR REPLACE TRIGGER "cf_dep_lampposts_slow_full_name_b1f408309b" BEFORE UPDATE OF "first_name", "country", "cached_total_weight" ON "lampposts" FOR EACH ROW WHEN ((OLD."first_name" IS DISTINCT FROM NEW."first_name" OR OLD."country" IS DISTINCT FROM NEW."country" OR OLD."cached_total_weight" IS DISTINCT FROM NEW."cached_total_weight") AND NOT (NEW."slow_full_name_recalculation_version" = OLD."slow_full_name_recalculation_version" + 1 AND NOT NEW."slow_full_name_recalculation_needed")) EXECUTE FUNCTION "cf_dep_lampposts_slow_full_name_b1f408309b"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_dep_lampposts_slow_full_name_b1f408309b";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_dep_lampposts_slow_full_name_b1f408309b', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_dep_lampposts_slow_full_name_b1f408309b' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_guard_lampposts_2c6c678be9_values_998883c036"(o anyelement, n anyelement) RETURNS boolean[] LANGUAGE sql STABLE STRICT AS $cf$ SELECT ARRAY[o."cached_total_weight" IS DISTINCT FROM n."cached_total_weight", o."cached_slow_full_name" IS DISTINCT FROM n."cached_slow_full_name", o."id" IS DISTINCT FROM n."id"] $cf$;
CREATE OR REPLACE FUNCTION "cf_guard_lampposts_2c6c678be9"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_guard_lampposts_2c6c678be9" BEFORE UPDATE ON "lampposts" FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND current_setting('cached_fields.worker', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION "cf_guard_lampposts_2c6c678be9"()
DECLARE cf_changed boolean[];
BEGIN
  -- "cf_guard_lampposts_2c6c678be9_values_998883c036": o."cached_total_weight" IS DISTINCT FROM n."cached_total_weight", o."cached_slow_full_name" IS DISTINCT FROM n."cached_slow_full_name", o."id" IS DISTINCT FROM n."id"
  BEGIN cf_changed := ARRAY[OLD."cached_total_weight" IS DISTINCT FROM NEW."cached_total_weight", OLD."cached_slow_full_name" IS DISTINCT FROM NEW."cached_slow_full_name", OLD."id" IS DISTINCT FROM NEW."id"];
  EXCEPTION WHEN datatype_mismatch THEN cf_changed := "cf_guard_lampposts_2c6c678be9_values_998883c036"(OLD, NEW);
  END;
  IF cf_changed[3] THEN
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
    RETURN NEW;
  END IF;
  IF NOT NEW."total_weight_recalculation_needed" AND NEW."total_weight_recalculation_version" IS DISTINCT FROM OLD."total_weight_recalculation_version" + 1 THEN
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
CREATE OR REPLACE FUNCTION "cf_bump_streets_pigeon_weight_recalculation_needed_197f383e92"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_bump_streets_pigeon_weight_recalculation_needed_197f383e92" BEFORE UPDATE OF "pigeon_weight_recalculation_needed" ON "streets" FOR EACH ROW WHEN (NEW."pigeon_weight_recalculation_needed") EXECUTE FUNCTION "cf_bump_streets_pigeon_weight_recalculation_needed_197f383e92"()
BEGIN
  NEW."pigeon_weight_recalculation_needed" := TRUE;
  NEW."pigeon_weight_recalculation_version" := OLD."pigeon_weight_recalculation_version" + 1;
  IF NEW."pigeon_weight_next_attempt_at" IS DISTINCT FROM OLD."pigeon_weight_next_attempt_at" THEN
    NULL;
  ELSIF OLD."pigeon_weight_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."pigeon_weight_next_attempt_at" := NULL;
  ELSIF OLD."pigeon_weight_recalculation_needed" AND OLD."pigeon_weight_stale_since" IS NOT NULL THEN
    IF NEW."pigeon_weight_next_attempt_at" IS NOT NULL THEN NEW."pigeon_weight_next_attempt_at" := GREATEST(NEW."pigeon_weight_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."pigeon_weight_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."pigeon_weight_next_attempt_at" - OLD."pigeon_weight_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."pigeon_weight_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."pigeon_weight_next_attempt_at" := GREATEST(NEW."pigeon_weight_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."pigeon_weight_recalculation_needed" OR OLD."pigeon_weight_stale_since" IS NULL THEN NEW."pigeon_weight_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_bump_streets_pigeon_weight_recalculation_needed_197f383e92" BEFORE UPDATE OF "pigeon_weight_recalculation_needed" ON "streets" FOR EACH ROW WHEN (NEW."pigeon_weight_recalculation_needed") EXECUTE FUNCTION "cf_bump_streets_pigeon_weight_recalculation_needed_197f383e92"();
ALTER TABLE "streets" ENABLE ALWAYS TRIGGER "cf_bump_streets_pigeon_weight_recalculation_needed_197f383e92";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_bump_streets_pigeon_weight_recalculation_needed_197f383e92', 'streets', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_bump_streets_pigeon_weight_recalculation_needed_197f383e92' AND tgrelid = to_regclass('"streets"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_bump_streets_heaviest_recalculation_needed_b3659bc2ae"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_bump_streets_heaviest_recalculation_needed_b3659bc2ae" BEFORE UPDATE OF "heaviest_recalculation_needed" ON "streets" FOR EACH ROW WHEN (NEW."heaviest_recalculation_needed") EXECUTE FUNCTION "cf_bump_streets_heaviest_recalculation_needed_b3659bc2ae"()
BEGIN
  NEW."heaviest_recalculation_needed" := TRUE;
  NEW."heaviest_recalculation_version" := OLD."heaviest_recalculation_version" + 1;
  IF NEW."heaviest_next_attempt_at" IS DISTINCT FROM OLD."heaviest_next_attempt_at" THEN
    NULL;
  ELSIF OLD."heaviest_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."heaviest_next_attempt_at" := NULL;
  ELSIF OLD."heaviest_recalculation_needed" AND OLD."heaviest_stale_since" IS NOT NULL THEN
    IF NEW."heaviest_next_attempt_at" IS NOT NULL THEN NEW."heaviest_next_attempt_at" := GREATEST(NEW."heaviest_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."heaviest_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."heaviest_next_attempt_at" - OLD."heaviest_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."heaviest_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."heaviest_next_attempt_at" := GREATEST(NEW."heaviest_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."heaviest_recalculation_needed" OR OLD."heaviest_stale_since" IS NULL THEN NEW."heaviest_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_bump_streets_heaviest_recalculation_needed_b3659bc2ae" BEFORE UPDATE OF "heaviest_recalculation_needed" ON "streets" FOR EACH ROW WHEN (NEW."heaviest_recalculation_needed") EXECUTE FUNCTION "cf_bump_streets_heaviest_recalculation_needed_b3659bc2ae"();
ALTER TABLE "streets" ENABLE ALWAYS TRIGGER "cf_bump_streets_heaviest_recalculation_needed_b3659bc2ae";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_bump_streets_heaviest_recalculation_needed_b3659bc2ae', 'streets', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_bump_streets_heaviest_recalculation_needed_b3659bc2ae' AND tgrelid = to_regclass('"streets"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_guard_streets_828c70969a_values_be52253273"(o anyelement, n anyelement) RETURNS boolean[] LANGUAGE sql STABLE STRICT AS $cf$ SELECT ARRAY[o."cached_pigeon_weight" IS DISTINCT FROM n."cached_pigeon_weight", o."cached_heaviest" IS DISTINCT FROM n."cached_heaviest", o."id" IS DISTINCT FROM n."id"] $cf$;
CREATE OR REPLACE FUNCTION "cf_guard_streets_828c70969a"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_guard_streets_828c70969a" BEFORE UPDATE ON "streets" FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND current_setting('cached_fields.worker', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION "cf_guard_streets_828c70969a"()
DECLARE cf_changed boolean[];
BEGIN
  -- "cf_guard_streets_828c70969a_values_be52253273": o."cached_pigeon_weight" IS DISTINCT FROM n."cached_pigeon_weight", o."cached_heaviest" IS DISTINCT FROM n."cached_heaviest", o."id" IS DISTINCT FROM n."id"
  BEGIN cf_changed := ARRAY[OLD."cached_pigeon_weight" IS DISTINCT FROM NEW."cached_pigeon_weight", OLD."cached_heaviest" IS DISTINCT FROM NEW."cached_heaviest", OLD."id" IS DISTINCT FROM NEW."id"];
  EXCEPTION WHEN datatype_mismatch THEN cf_changed := "cf_guard_streets_828c70969a_values_be52253273"(OLD, NEW);
  END;
  IF cf_changed[3] THEN
    NEW."pigeon_weight_stale_since" := OLD."pigeon_weight_stale_since";
    NEW."pigeon_weight_next_attempt_at" := OLD."pigeon_weight_next_attempt_at";
    NEW."pigeon_weight_attempts" := OLD."pigeon_weight_attempts";
    NEW."pigeon_weight_last_error" := OLD."pigeon_weight_last_error";
    NEW."pigeon_weight_recalculation_needed" := TRUE;
  NEW."pigeon_weight_recalculation_version" := OLD."pigeon_weight_recalculation_version" + 1;
  IF NEW."pigeon_weight_next_attempt_at" IS DISTINCT FROM OLD."pigeon_weight_next_attempt_at" THEN
    NULL;
  ELSIF OLD."pigeon_weight_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."pigeon_weight_next_attempt_at" := NULL;
  ELSIF OLD."pigeon_weight_recalculation_needed" AND OLD."pigeon_weight_stale_since" IS NOT NULL THEN
    IF NEW."pigeon_weight_next_attempt_at" IS NOT NULL THEN NEW."pigeon_weight_next_attempt_at" := GREATEST(NEW."pigeon_weight_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."pigeon_weight_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."pigeon_weight_next_attempt_at" - OLD."pigeon_weight_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."pigeon_weight_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."pigeon_weight_next_attempt_at" := GREATEST(NEW."pigeon_weight_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."pigeon_weight_recalculation_needed" OR OLD."pigeon_weight_stale_since" IS NULL THEN NEW."pigeon_weight_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
    NEW."heaviest_stale_since" := OLD."heaviest_stale_since";
    NEW."heaviest_next_attempt_at" := OLD."heaviest_next_attempt_at";
    NEW."heaviest_attempts" := OLD."heaviest_attempts";
    NEW."heaviest_last_error" := OLD."heaviest_last_error";
    NEW."heaviest_recalculation_needed" := TRUE;
  NEW."heaviest_recalculation_version" := OLD."heaviest_recalculation_version" + 1;
  IF NEW."heaviest_next_attempt_at" IS DISTINCT FROM OLD."heaviest_next_attempt_at" THEN
    NULL;
  ELSIF OLD."heaviest_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."heaviest_next_attempt_at" := NULL;
  ELSIF OLD."heaviest_recalculation_needed" AND OLD."heaviest_stale_since" IS NOT NULL THEN
    IF NEW."heaviest_next_attempt_at" IS NOT NULL THEN NEW."heaviest_next_attempt_at" := GREATEST(NEW."heaviest_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."heaviest_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."heaviest_next_attempt_at" - OLD."heaviest_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."heaviest_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."heaviest_next_attempt_at" := GREATEST(NEW."heaviest_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."heaviest_recalculation_needed" OR OLD."heaviest_stale_since" IS NULL THEN NEW."heaviest_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
    RETURN NEW;
  END IF;
  IF NOT NEW."pigeon_weight_recalculation_needed" AND NEW."pigeon_weight_recalculation_version" IS DISTINCT FROM OLD."pigeon_weight_recalculation_version" + 1 THEN
    IF OLD."pigeon_weight_recalculation_needed" OR cf_changed[1] THEN
    NEW."pigeon_weight_stale_since" := OLD."pigeon_weight_stale_since";
    NEW."pigeon_weight_next_attempt_at" := OLD."pigeon_weight_next_attempt_at";
    NEW."pigeon_weight_attempts" := OLD."pigeon_weight_attempts";
    NEW."pigeon_weight_last_error" := OLD."pigeon_weight_last_error";
    NEW."pigeon_weight_recalculation_needed" := TRUE;
  NEW."pigeon_weight_recalculation_version" := OLD."pigeon_weight_recalculation_version" + 1;
  IF NEW."pigeon_weight_next_attempt_at" IS DISTINCT FROM OLD."pigeon_weight_next_attempt_at" THEN
    NULL;
  ELSIF OLD."pigeon_weight_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."pigeon_weight_next_attempt_at" := NULL;
  ELSIF OLD."pigeon_weight_recalculation_needed" AND OLD."pigeon_weight_stale_since" IS NOT NULL THEN
    IF NEW."pigeon_weight_next_attempt_at" IS NOT NULL THEN NEW."pigeon_weight_next_attempt_at" := GREATEST(NEW."pigeon_weight_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."pigeon_weight_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."pigeon_weight_next_attempt_at" - OLD."pigeon_weight_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."pigeon_weight_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."pigeon_weight_next_attempt_at" := GREATEST(NEW."pigeon_weight_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."pigeon_weight_recalculation_needed" OR OLD."pigeon_weight_stale_since" IS NULL THEN NEW."pigeon_weight_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
    END IF;
  END IF;
  IF NOT NEW."heaviest_recalculation_needed" AND NEW."heaviest_recalculation_version" IS DISTINCT FROM OLD."heaviest_recalculation_version" + 1 THEN
    IF OLD."heaviest_recalculation_needed" OR cf_changed[2] THEN
    NEW."heaviest_stale_since" := OLD."heaviest_stale_since";
    NEW."heaviest_next_attempt_at" := OLD."heaviest_next_attempt_at";
    NEW."heaviest_attempts" := OLD."heaviest_attempts";
    NEW."heaviest_last_error" := OLD."heaviest_last_error";
    NEW."heaviest_recalculation_needed" := TRUE;
  NEW."heaviest_recalculation_version" := OLD."heaviest_recalculation_version" + 1;
  IF NEW."heaviest_next_attempt_at" IS DISTINCT FROM OLD."heaviest_next_attempt_at" THEN
    NULL;
  ELSIF OLD."heaviest_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."heaviest_next_attempt_at" := NULL;
  ELSIF OLD."heaviest_recalculation_needed" AND OLD."heaviest_stale_since" IS NOT NULL THEN
    IF NEW."heaviest_next_attempt_at" IS NOT NULL THEN NEW."heaviest_next_attempt_at" := GREATEST(NEW."heaviest_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."heaviest_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."heaviest_next_attempt_at" - OLD."heaviest_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."heaviest_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."heaviest_next_attempt_at" := GREATEST(NEW."heaviest_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."heaviest_recalculation_needed" OR OLD."heaviest_stale_since" IS NULL THEN NEW."heaviest_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
    END IF;
  END IF;
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_guard_streets_828c70969a" BEFORE UPDATE ON "streets" FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND current_setting('cached_fields.worker', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION "cf_guard_streets_828c70969a"();
ALTER TABLE "streets" ENABLE ALWAYS TRIGGER "cf_guard_streets_828c70969a";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_guard_streets_828c70969a', 'streets', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_guard_streets_828c70969a' AND tgrelid = to_regclass('"streets"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_insert_streets_6b07f7b11c"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_insert_streets_6b07f7b11c" BEFORE INSERT ON "streets" FOR EACH ROW EXECUTE FUNCTION "cf_insert_streets_6b07f7b11c"()
BEGIN
  NEW."pigeon_weight_recalculation_needed" := TRUE;
  NEW."pigeon_weight_recalculation_version" := GREATEST(COALESCE(NEW."pigeon_weight_recalculation_version", 0) + 1, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT));
  NEW."pigeon_weight_stale_since" := clock_timestamp();
  NEW."pigeon_weight_next_attempt_at" := NULL;
  NEW."pigeon_weight_attempts" := 0;
  NEW."pigeon_weight_last_error" := NULL;
  NEW."heaviest_recalculation_needed" := TRUE;
  NEW."heaviest_recalculation_version" := GREATEST(COALESCE(NEW."heaviest_recalculation_version", 0) + 1, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT));
  NEW."heaviest_stale_since" := clock_timestamp();
  NEW."heaviest_next_attempt_at" := NULL;
  NEW."heaviest_attempts" := 0;
  NEW."heaviest_last_error" := NULL;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_insert_streets_6b07f7b11c" BEFORE INSERT ON "streets" FOR EACH ROW EXECUTE FUNCTION "cf_insert_streets_6b07f7b11c"();
ALTER TABLE "streets" ENABLE ALWAYS TRIGGER "cf_insert_streets_6b07f7b11c";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_insert_streets_6b07f7b11c', 'streets', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_insert_streets_6b07f7b11c' AND tgrelid = to_regclass('"streets"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_bump_pigeons_perch_recalculation_needed_731ebb4f1e"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_bump_pigeons_perch_recalculation_needed_731ebb4f1e" BEFORE UPDATE OF "perch_recalculation_needed" ON "pigeons" FOR EACH ROW WHEN (NEW."perch_recalculation_needed") EXECUTE FUNCTION "cf_bump_pigeons_perch_recalculation_needed_731ebb4f1e"()
BEGIN
  NEW."perch_recalculation_needed" := TRUE;
  NEW."perch_recalculation_version" := OLD."perch_recalculation_version" + 1;
  IF NEW."perch_next_attempt_at" IS DISTINCT FROM OLD."perch_next_attempt_at" THEN
    NULL;
  ELSIF OLD."perch_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."perch_next_attempt_at" := NULL;
  ELSIF OLD."perch_recalculation_needed" AND OLD."perch_stale_since" IS NOT NULL THEN
    IF NEW."perch_next_attempt_at" IS NOT NULL THEN NEW."perch_next_attempt_at" := GREATEST(NEW."perch_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."perch_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."perch_next_attempt_at" - OLD."perch_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."perch_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."perch_next_attempt_at" := GREATEST(NEW."perch_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."perch_recalculation_needed" OR OLD."perch_stale_since" IS NULL THEN NEW."perch_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_bump_pigeons_perch_recalculation_needed_731ebb4f1e" BEFORE UPDATE OF "perch_recalculation_needed" ON "pigeons" FOR EACH ROW WHEN (NEW."perch_recalculation_needed") EXECUTE FUNCTION "cf_bump_pigeons_perch_recalculation_needed_731ebb4f1e"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_bump_pigeons_perch_recalculation_needed_731ebb4f1e";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_bump_pigeons_perch_recalculation_needed_731ebb4f1e', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_bump_pigeons_perch_recalculation_needed_731ebb4f1e' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_dep_pigeons_perch_d878db4fd6"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_dep_pigeons_perch_d878db4fd6" BEFORE UPDATE OF "lamppost_id" ON "pigeons" FOR EACH ROW WHEN ((OLD."lamppost_id" IS DISTINCT FROM NEW."lamppost_id") AND NOT (NEW."perch_recalculation_version" = OLD."perch_recalculation_version" + 1 AND NOT NEW."perch_recalculation_needed")) EXECUTE FUNCTION "cf_dep_pigeons_perch_d878db4fd6"()
BEGIN
  IF NEW."lamppost_id" IS DISTINCT FROM OLD."lamppost_id" THEN
    PERFORM 1 FROM "lampposts" WHERE "id" = NEW."lamppost_id" FOR KEY SHARE;
  END IF;
  NEW."perch_recalculation_needed" := TRUE;
  NEW."perch_recalculation_version" := OLD."perch_recalculation_version" + 1;
  IF NEW."perch_next_attempt_at" IS DISTINCT FROM OLD."perch_next_attempt_at" THEN
    NULL;
  ELSIF OLD."perch_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."perch_next_attempt_at" := NULL;
  ELSIF OLD."perch_recalculation_needed" AND OLD."perch_stale_since" IS NOT NULL THEN
    IF NEW."perch_next_attempt_at" IS NOT NULL THEN NEW."perch_next_attempt_at" := GREATEST(NEW."perch_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."perch_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."perch_next_attempt_at" - OLD."perch_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."perch_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."perch_next_attempt_at" := GREATEST(NEW."perch_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."perch_recalculation_needed" OR OLD."perch_stale_since" IS NULL THEN NEW."perch_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_dep_pigeons_perch_d878db4fd6" BEFORE UPDATE OF "lamppost_id" ON "pigeons" FOR EACH ROW WHEN ((OLD."lamppost_id" IS DISTINCT FROM NEW."lamppost_id") AND NOT (NEW."perch_recalculation_version" = OLD."perch_recalculation_version" + 1 AND NOT NEW."perch_recalculation_needed")) EXECUTE FUNCTION "cf_dep_pigeons_perch_d878db4fd6"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_dep_pigeons_perch_d878db4fd6";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_dep_pigeons_perch_d878db4fd6', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_dep_pigeons_perch_d878db4fd6' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_guard_pigeons_97186664df_values_54dcb372ba"(o anyelement, n anyelement) RETURNS boolean[] LANGUAGE sql STABLE STRICT AS $cf$ SELECT ARRAY[o."cached_perch" IS DISTINCT FROM n."cached_perch", o."id" IS DISTINCT FROM n."id"] $cf$;
CREATE OR REPLACE FUNCTION "cf_guard_pigeons_97186664df"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_guard_pigeons_97186664df" BEFORE UPDATE ON "pigeons" FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND current_setting('cached_fields.worker', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION "cf_guard_pigeons_97186664df"()
DECLARE cf_changed boolean[];
BEGIN
  -- "cf_guard_pigeons_97186664df_values_54dcb372ba": o."cached_perch" IS DISTINCT FROM n."cached_perch", o."id" IS DISTINCT FROM n."id"
  BEGIN cf_changed := ARRAY[OLD."cached_perch" IS DISTINCT FROM NEW."cached_perch", OLD."id" IS DISTINCT FROM NEW."id"];
  EXCEPTION WHEN datatype_mismatch THEN cf_changed := "cf_guard_pigeons_97186664df_values_54dcb372ba"(OLD, NEW);
  END;
  IF cf_changed[2] THEN
    NEW."perch_stale_since" := OLD."perch_stale_since";
    NEW."perch_next_attempt_at" := OLD."perch_next_attempt_at";
    NEW."perch_attempts" := OLD."perch_attempts";
    NEW."perch_last_error" := OLD."perch_last_error";
    NEW."perch_recalculation_needed" := TRUE;
  NEW."perch_recalculation_version" := OLD."perch_recalculation_version" + 1;
  IF NEW."perch_next_attempt_at" IS DISTINCT FROM OLD."perch_next_attempt_at" THEN
    NULL;
  ELSIF OLD."perch_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."perch_next_attempt_at" := NULL;
  ELSIF OLD."perch_recalculation_needed" AND OLD."perch_stale_since" IS NOT NULL THEN
    IF NEW."perch_next_attempt_at" IS NOT NULL THEN NEW."perch_next_attempt_at" := GREATEST(NEW."perch_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."perch_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."perch_next_attempt_at" - OLD."perch_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."perch_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."perch_next_attempt_at" := GREATEST(NEW."perch_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."perch_recalculation_needed" OR OLD."perch_stale_since" IS NULL THEN NEW."perch_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
    RETURN NEW;
  END IF;
  IF NOT NEW."perch_recalculation_needed" AND NEW."perch_recalculation_version" IS DISTINCT FROM OLD."perch_recalculation_version" + 1 THEN
    IF OLD."perch_recalculation_needed" OR cf_changed[1] THEN
    NEW."perch_stale_since" := OLD."perch_stale_since";
    NEW."perch_next_attempt_at" := OLD."perch_next_attempt_at";
    NEW."perch_attempts" := OLD."perch_attempts";
    NEW."perch_last_error" := OLD."perch_last_error";
    NEW."perch_recalculation_needed" := TRUE;
  NEW."perch_recalculation_version" := OLD."perch_recalculation_version" + 1;
  IF NEW."perch_next_attempt_at" IS DISTINCT FROM OLD."perch_next_attempt_at" THEN
    NULL;
  ELSIF OLD."perch_next_attempt_at" >= TIMESTAMPTZ '9999-01-01T00:00:00Z' THEN
    NEW."perch_next_attempt_at" := NULL;
  ELSIF OLD."perch_recalculation_needed" AND OLD."perch_stale_since" IS NOT NULL THEN
    IF NEW."perch_next_attempt_at" IS NOT NULL THEN NEW."perch_next_attempt_at" := GREATEST(NEW."perch_next_attempt_at", LEAST(clock_timestamp() + interval '50 milliseconds', OLD."perch_stale_since" + interval '2000 milliseconds' * GREATEST(1, ceil(EXTRACT(EPOCH FROM OLD."perch_next_attempt_at" - OLD."perch_stale_since") * 1000 / 2000 - 0.001)))); END IF;
  ELSIF OLD."perch_stale_since" > (clock_timestamp() + interval '-50 milliseconds') THEN
    NEW."perch_next_attempt_at" := GREATEST(NEW."perch_next_attempt_at", (clock_timestamp() + interval '50 milliseconds'));
  END IF;
  IF NOT OLD."perch_recalculation_needed" OR OLD."perch_stale_since" IS NULL THEN NEW."perch_stale_since" := clock_timestamp(); END IF;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
    END IF;
  END IF;
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_guard_pigeons_97186664df" BEFORE UPDATE ON "pigeons" FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND current_setting('cached_fields.worker', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION "cf_guard_pigeons_97186664df"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_guard_pigeons_97186664df";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_guard_pigeons_97186664df', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_guard_pigeons_97186664df' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_insert_pigeons_995886673d"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_insert_pigeons_995886673d" BEFORE INSERT ON "pigeons" FOR EACH ROW EXECUTE FUNCTION "cf_insert_pigeons_995886673d"()
BEGIN
  PERFORM 1 FROM "lampposts" WHERE "id" = NEW."lamppost_id" FOR KEY SHARE;
  NEW."perch_recalculation_needed" := TRUE;
  NEW."perch_recalculation_version" := GREATEST(COALESCE(NEW."perch_recalculation_version", 0) + 1, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT));
  NEW."perch_stale_since" := clock_timestamp();
  NEW."perch_next_attempt_at" := NULL;
  NEW."perch_attempts" := 0;
  NEW."perch_last_error" := NULL;
  PERFORM pg_notify('cached_fields', TG_TABLE_NAME);
  RETURN NEW;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_insert_pigeons_995886673d" BEFORE INSERT ON "pigeons" FOR EACH ROW EXECUTE FUNCTION "cf_insert_pigeons_995886673d"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_insert_pigeons_995886673d";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_insert_pigeons_995886673d', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_insert_pigeons_995886673d' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_ins_pigeons_4f4483438c"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_ins_pigeons_4f4483438c" AFTER INSERT ON "pigeons" REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_ins_pigeons_4f4483438c"()
BEGIN
  UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM cf_rows));
  PERFORM 1 FROM "lampposts" WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM cf_rows)) FOR KEY SHARE;
  UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM "lampposts" WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM cf_rows))));
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_ins_pigeons_4f4483438c" AFTER INSERT ON "pigeons" REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_ins_pigeons_4f4483438c"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_ins_pigeons_4f4483438c";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_ins_pigeons_4f4483438c', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_ins_pigeons_4f4483438c' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_del_pigeons_ba954a2ff3"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_del_pigeons_ba954a2ff3" AFTER DELETE ON "pigeons" REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_del_pigeons_ba954a2ff3"()
BEGIN
  UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM cf_rows));
  PERFORM 1 FROM "lampposts" WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM cf_rows)) FOR KEY SHARE;
  UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM "lampposts" WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM cf_rows))));
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_del_pigeons_ba954a2ff3" AFTER DELETE ON "pigeons" REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_del_pigeons_ba954a2ff3"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_del_pigeons_ba954a2ff3";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_del_pigeons_ba954a2ff3', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_del_pigeons_ba954a2ff3' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_upd_pigeons_ec94ad9a39"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_upd_pigeons_ec94ad9a39" AFTER UPDATE ON "pigeons" REFERENCING OLD TABLE AS cf_old NEW TABLE AS cf_new FOR EACH STATEMENT EXECUTE FUNCTION "cf_upd_pigeons_ec94ad9a39"()
BEGIN
  IF EXISTS (SELECT "lamppost_id", "weight" FROM cf_old EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_new) THEN
    IF EXISTS (SELECT "lamppost_id" FROM ((SELECT "lamppost_id", "weight" FROM cf_old EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_new) UNION ALL (SELECT "lamppost_id", "weight" FROM cf_new EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_old)) AS cf_moved) THEN
      PERFORM 1 FROM "pigeons" WHERE ("lamppost_id", "weight") IN (SELECT "lamppost_id", "weight" FROM cf_new EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_old) AND "lamppost_id" = ANY(ARRAY(SELECT "lamppost_id" FROM cf_new EXCEPT ALL SELECT "lamppost_id" FROM cf_old)) FOR UPDATE;
      UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM ((SELECT "lamppost_id", "weight" FROM cf_old EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_new) UNION ALL (SELECT "lamppost_id", "weight" FROM cf_new EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_old)) AS cf_moved));
    END IF;
    IF EXISTS (SELECT "lamppost_id" FROM ((SELECT "lamppost_id", "weight" FROM cf_old EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_new) UNION ALL (SELECT "lamppost_id", "weight" FROM cf_new EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_old)) AS cf_moved) THEN
      PERFORM 1 FROM "pigeons" WHERE ("lamppost_id", "weight") IN (SELECT "lamppost_id", "weight" FROM cf_new EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_old) AND "lamppost_id" = ANY(ARRAY(SELECT "lamppost_id" FROM cf_new EXCEPT ALL SELECT "lamppost_id" FROM cf_old)) FOR UPDATE;
      PERFORM 1 FROM "lampposts" WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM ((SELECT "lamppost_id", "weight" FROM cf_old EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_new) UNION ALL (SELECT "lamppost_id", "weight" FROM cf_new EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_old)) AS cf_moved)) FOR KEY SHARE;
      UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM "lampposts" WHERE "id" = ANY(ARRAY(SELECT "lamppost_id" FROM ((SELECT "lamppost_id", "weight" FROM cf_old EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_new) UNION ALL (SELECT "lamppost_id", "weight" FROM cf_new EXCEPT ALL SELECT "lamppost_id", "weight" FROM cf_old)) AS cf_moved))));
    END IF;
  END IF;
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_upd_pigeons_ec94ad9a39" AFTER UPDATE ON "pigeons" REFERENCING OLD TABLE AS cf_old NEW TABLE AS cf_new FOR EACH STATEMENT EXECUTE FUNCTION "cf_upd_pigeons_ec94ad9a39"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_upd_pigeons_ec94ad9a39";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_upd_pigeons_ec94ad9a39', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_upd_pigeons_ec94ad9a39' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_trunc_pigeons_197dca7eb6"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_trunc_pigeons_197dca7eb6" AFTER TRUNCATE ON "pigeons" FOR EACH STATEMENT EXECUTE FUNCTION "cf_trunc_pigeons_197dca7eb6"()
BEGIN
  UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE;
  UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE;
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_trunc_pigeons_197dca7eb6" AFTER TRUNCATE ON "pigeons" FOR EACH STATEMENT EXECUTE FUNCTION "cf_trunc_pigeons_197dca7eb6"();
ALTER TABLE "pigeons" ENABLE ALWAYS TRIGGER "cf_trunc_pigeons_197dca7eb6";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_trunc_pigeons_197dca7eb6', 'pigeons', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_trunc_pigeons_197dca7eb6' AND tgrelid = to_regclass('"pigeons"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_ins_lampposts_3ea7903b02"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_ins_lampposts_3ea7903b02" AFTER INSERT ON "lampposts" REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_ins_lampposts_3ea7903b02"()
BEGIN
  PERFORM 1 FROM "streets" WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM cf_rows)) FOR KEY SHARE;
  UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM cf_rows));
  UPDATE "streets" SET "heaviest_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM cf_rows));
  UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE WHERE "lamppost_id" = ANY(ARRAY(SELECT "id" FROM cf_rows));
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_ins_lampposts_3ea7903b02" AFTER INSERT ON "lampposts" REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_ins_lampposts_3ea7903b02"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_ins_lampposts_3ea7903b02";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_ins_lampposts_3ea7903b02', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_ins_lampposts_3ea7903b02' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_del_lampposts_3b101e58ed"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_del_lampposts_3b101e58ed" AFTER DELETE ON "lampposts" REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_del_lampposts_3b101e58ed"()
BEGIN
  UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM cf_rows));
  UPDATE "streets" SET "heaviest_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM cf_rows));
  UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE WHERE "lamppost_id" = ANY(ARRAY(SELECT "id" FROM cf_rows));
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_del_lampposts_3b101e58ed" AFTER DELETE ON "lampposts" REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_del_lampposts_3b101e58ed"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_del_lampposts_3b101e58ed";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_del_lampposts_3b101e58ed', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_del_lampposts_3b101e58ed' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_upd_lampposts_d750467aaf"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_upd_lampposts_d750467aaf" AFTER UPDATE ON "lampposts" REFERENCING OLD TABLE AS cf_old NEW TABLE AS cf_new FOR EACH STATEMENT EXECUTE FUNCTION "cf_upd_lampposts_d750467aaf"()
BEGIN
  IF EXISTS (SELECT "street_id", "id", "cached_total_weight", "first_name", "country" FROM cf_old EXCEPT ALL SELECT "street_id", "id", "cached_total_weight", "first_name", "country" FROM cf_new) THEN
    PERFORM 1 FROM "streets" WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM cf_new EXCEPT ALL SELECT "street_id" FROM cf_old)) FOR KEY SHARE;
    IF EXISTS (SELECT "street_id" FROM ((SELECT "street_id", "id" FROM cf_old EXCEPT ALL SELECT "street_id", "id" FROM cf_new) UNION ALL (SELECT "street_id", "id" FROM cf_new EXCEPT ALL SELECT "street_id", "id" FROM cf_old)) AS cf_moved) THEN
      PERFORM 1 FROM "lampposts" WHERE ("street_id", "id") IN (SELECT "street_id", "id" FROM cf_new EXCEPT ALL SELECT "street_id", "id" FROM cf_old) AND "street_id" = ANY(ARRAY(SELECT "street_id" FROM cf_new EXCEPT ALL SELECT "street_id" FROM cf_old)) FOR UPDATE;
      UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM ((SELECT "street_id", "id" FROM cf_old EXCEPT ALL SELECT "street_id", "id" FROM cf_new) UNION ALL (SELECT "street_id", "id" FROM cf_new EXCEPT ALL SELECT "street_id", "id" FROM cf_old)) AS cf_moved));
    END IF;
    IF EXISTS (SELECT "street_id" FROM ((SELECT "street_id", "cached_total_weight" FROM cf_old EXCEPT ALL SELECT "street_id", "cached_total_weight" FROM cf_new) UNION ALL (SELECT "street_id", "cached_total_weight" FROM cf_new EXCEPT ALL SELECT "street_id", "cached_total_weight" FROM cf_old)) AS cf_moved) THEN
      PERFORM 1 FROM "lampposts" WHERE ("street_id", "cached_total_weight") IN (SELECT "street_id", "cached_total_weight" FROM cf_new EXCEPT ALL SELECT "street_id", "cached_total_weight" FROM cf_old) AND "street_id" = ANY(ARRAY(SELECT "street_id" FROM cf_new EXCEPT ALL SELECT "street_id" FROM cf_old)) FOR UPDATE;
      UPDATE "streets" SET "heaviest_recalculation_needed" = TRUE WHERE "id" = ANY(ARRAY(SELECT "street_id" FROM ((SELECT "street_id", "cached_total_weight" FROM cf_old EXCEPT ALL SELECT "street_id", "cached_total_weight" FROM cf_new) UNION ALL (SELECT "street_id", "cached_total_weight" FROM cf_new EXCEPT ALL SELECT "street_id", "cached_total_weight" FROM cf_old)) AS cf_moved));
    END IF;
    IF EXISTS (SELECT "id" FROM ((SELECT "id", "first_name", "country", "street_id" FROM cf_old EXCEPT ALL SELECT "id", "first_name", "country", "street_id" FROM cf_new) UNION ALL (SELECT "id", "first_name", "country", "street_id" FROM cf_new EXCEPT ALL SELECT "id", "first_name", "country", "street_id" FROM cf_old)) AS cf_moved) THEN
      PERFORM 1 FROM "lampposts" WHERE "id" = ANY(ARRAY(SELECT "id" FROM (SELECT "id", "first_name", "country", "street_id" FROM cf_new EXCEPT ALL SELECT "id", "first_name", "country", "street_id" FROM cf_old) AS cf_changed)) FOR UPDATE;
      UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE WHERE "lamppost_id" = ANY(ARRAY(SELECT "id" FROM ((SELECT "id", "first_name", "country", "street_id" FROM cf_old EXCEPT ALL SELECT "id", "first_name", "country", "street_id" FROM cf_new) UNION ALL (SELECT "id", "first_name", "country", "street_id" FROM cf_new EXCEPT ALL SELECT "id", "first_name", "country", "street_id" FROM cf_old)) AS cf_moved));
    END IF;
  END IF;
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_upd_lampposts_d750467aaf" AFTER UPDATE ON "lampposts" REFERENCING OLD TABLE AS cf_old NEW TABLE AS cf_new FOR EACH STATEMENT EXECUTE FUNCTION "cf_upd_lampposts_d750467aaf"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_upd_lampposts_d750467aaf";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_upd_lampposts_d750467aaf', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_upd_lampposts_d750467aaf' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_trunc_lampposts_11a2e58590"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_trunc_lampposts_11a2e58590" AFTER TRUNCATE ON "lampposts" FOR EACH STATEMENT EXECUTE FUNCTION "cf_trunc_lampposts_11a2e58590"()
BEGIN
  UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE;
  UPDATE "streets" SET "heaviest_recalculation_needed" = TRUE;
  UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE;
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_trunc_lampposts_11a2e58590" AFTER TRUNCATE ON "lampposts" FOR EACH STATEMENT EXECUTE FUNCTION "cf_trunc_lampposts_11a2e58590"();
ALTER TABLE "lampposts" ENABLE ALWAYS TRIGGER "cf_trunc_lampposts_11a2e58590";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_trunc_lampposts_11a2e58590', 'lampposts', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_trunc_lampposts_11a2e58590' AND tgrelid = to_regclass('"lampposts"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_ins_streets_e1aa4a5985"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_ins_streets_e1aa4a5985" AFTER INSERT ON "streets" REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_ins_streets_e1aa4a5985"()
BEGIN
  PERFORM 1 FROM "lampposts" WHERE "street_id" = ANY(ARRAY(SELECT "id" FROM cf_rows)) FOR UPDATE;
  UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE WHERE "lamppost_id" = ANY(ARRAY(SELECT "id" FROM "lampposts" WHERE "street_id" = ANY(ARRAY(SELECT "id" FROM cf_rows))));
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_ins_streets_e1aa4a5985" AFTER INSERT ON "streets" REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_ins_streets_e1aa4a5985"();
ALTER TABLE "streets" ENABLE ALWAYS TRIGGER "cf_ins_streets_e1aa4a5985";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_ins_streets_e1aa4a5985', 'streets', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_ins_streets_e1aa4a5985' AND tgrelid = to_regclass('"streets"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_del_streets_d54d76f28e"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_del_streets_d54d76f28e" AFTER DELETE ON "streets" REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_del_streets_d54d76f28e"()
BEGIN
  PERFORM 1 FROM "lampposts" WHERE "street_id" = ANY(ARRAY(SELECT "id" FROM cf_rows)) FOR UPDATE;
  UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE WHERE "lamppost_id" = ANY(ARRAY(SELECT "id" FROM "lampposts" WHERE "street_id" = ANY(ARRAY(SELECT "id" FROM cf_rows))));
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_del_streets_d54d76f28e" AFTER DELETE ON "streets" REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT EXECUTE FUNCTION "cf_del_streets_d54d76f28e"();
ALTER TABLE "streets" ENABLE ALWAYS TRIGGER "cf_del_streets_d54d76f28e";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_del_streets_d54d76f28e', 'streets', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_del_streets_d54d76f28e' AND tgrelid = to_regclass('"streets"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_upd_streets_5e6907f2c8"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_upd_streets_5e6907f2c8" AFTER UPDATE ON "streets" REFERENCING OLD TABLE AS cf_old NEW TABLE AS cf_new FOR EACH STATEMENT EXECUTE FUNCTION "cf_upd_streets_5e6907f2c8"()
BEGIN
  IF EXISTS (SELECT "id", "name" FROM cf_old EXCEPT ALL SELECT "id", "name" FROM cf_new) THEN
    PERFORM 1 FROM "streets" WHERE "id" = ANY(ARRAY(SELECT "id" FROM (SELECT "id", "name" FROM cf_new EXCEPT ALL SELECT "id", "name" FROM cf_old) AS cf_changed)) FOR UPDATE;
    PERFORM 1 FROM "lampposts" WHERE "street_id" = ANY(ARRAY(SELECT "id" FROM ((SELECT "id", "name" FROM cf_old EXCEPT ALL SELECT "id", "name" FROM cf_new) UNION ALL (SELECT "id", "name" FROM cf_new EXCEPT ALL SELECT "id", "name" FROM cf_old)) AS cf_moved)) FOR UPDATE;
    UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE WHERE "lamppost_id" = ANY(ARRAY(SELECT "id" FROM "lampposts" WHERE "street_id" = ANY(ARRAY(SELECT "id" FROM ((SELECT "id", "name" FROM cf_old EXCEPT ALL SELECT "id", "name" FROM cf_new) UNION ALL (SELECT "id", "name" FROM cf_new EXCEPT ALL SELECT "id", "name" FROM cf_old)) AS cf_moved))));
  END IF;
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_upd_streets_5e6907f2c8" AFTER UPDATE ON "streets" REFERENCING OLD TABLE AS cf_old NEW TABLE AS cf_new FOR EACH STATEMENT EXECUTE FUNCTION "cf_upd_streets_5e6907f2c8"();
ALTER TABLE "streets" ENABLE ALWAYS TRIGGER "cf_upd_streets_5e6907f2c8";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_upd_streets_5e6907f2c8', 'streets', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_upd_streets_5e6907f2c8' AND tgrelid = to_regclass('"streets"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_trunc_streets_996fe7f87b"() RETURNS trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE OR REPLACE TRIGGER "cf_trunc_streets_996fe7f87b" AFTER TRUNCATE ON "streets" FOR EACH STATEMENT EXECUTE FUNCTION "cf_trunc_streets_996fe7f87b"()
BEGIN
  UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE;
  RETURN NULL;
END;
$cf$;
CREATE OR REPLACE TRIGGER "cf_trunc_streets_996fe7f87b" AFTER TRUNCATE ON "streets" FOR EACH STATEMENT EXECUTE FUNCTION "cf_trunc_streets_996fe7f87b"();
ALTER TABLE "streets" ENABLE ALWAYS TRIGGER "cf_trunc_streets_996fe7f87b";
DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', 'cf_trunc_streets_996fe7f87b', 'streets', 'cached-fields ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger WHERE tgname = 'cf_trunc_streets_996fe7f87b' AND tgrelid = to_regclass('"streets"'))); END $cfdo$;
CREATE OR REPLACE FUNCTION "cf_rewrite_lampposts_pigeons_streets_56def64757"() RETURNS event_trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE EVENT TRIGGER "cf_rewrite_lampposts_pigeons_streets_56def64757" ON table_rewrite EXECUTE FUNCTION "cf_rewrite_lampposts_pigeons_streets_56def64757"()
BEGIN
  IF pg_event_trigger_table_rewrite_reason() & 4 <> 0 THEN
    PERFORM set_config('cached_fields.rewritten', COALESCE(current_setting('cached_fields.rewritten', true), '') || ',' || CAST(pg_event_trigger_table_rewrite_oid() AS TEXT) || ',', true);
  END IF;
END;
$cf$;
DROP EVENT TRIGGER IF EXISTS "cf_rewrite_lampposts_pigeons_streets_56def64757";
CREATE EVENT TRIGGER "cf_rewrite_lampposts_pigeons_streets_56def64757" ON table_rewrite EXECUTE FUNCTION "cf_rewrite_lampposts_pigeons_streets_56def64757"();
ALTER EVENT TRIGGER "cf_rewrite_lampposts_pigeons_streets_56def64757" ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER "cf_rewrite_lampposts_pigeons_streets_56def64757" IS 'cached-fields';
CREATE OR REPLACE FUNCTION "cf_ddl_lampposts_pigeons_streets_28d05c9313"() RETURNS event_trigger LANGUAGE plpgsql AS $cf$
-- cached-fields: CREATE EVENT TRIGGER "cf_ddl_lampposts_pigeons_streets_28d05c9313" ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION "cf_ddl_lampposts_pigeons_streets_28d05c9313"()
DECLARE cf_table oid;
BEGIN
  FOR cf_table IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands() WHERE classid = CAST('pg_class' AS regclass) AND position(',' || CAST(objid AS TEXT) || ',' IN COALESCE(current_setting('cached_fields.rewritten', true), '')) > 0 LOOP
    IF cf_table = to_regclass('"lampposts"') THEN
      BEGIN UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE, "total_weight_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
      BEGIN UPDATE "lampposts" SET "slow_full_name_recalculation_needed" = TRUE, "slow_full_name_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
      BEGIN UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE, "pigeon_weight_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
      BEGIN UPDATE "streets" SET "heaviest_recalculation_needed" = TRUE, "heaviest_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
      BEGIN UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE, "perch_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
    END IF;
    IF cf_table = to_regclass('"pigeons"') THEN
      BEGIN UPDATE "lampposts" SET "total_weight_recalculation_needed" = TRUE, "total_weight_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
      BEGIN UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE, "pigeon_weight_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
      BEGIN UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE, "perch_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
    END IF;
    IF cf_table = to_regclass('"streets"') THEN
      BEGIN UPDATE "streets" SET "pigeon_weight_recalculation_needed" = TRUE, "pigeon_weight_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
      BEGIN UPDATE "streets" SET "heaviest_recalculation_needed" = TRUE, "heaviest_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
      BEGIN UPDATE "pigeons" SET "perch_recalculation_needed" = TRUE, "perch_next_attempt_at" = NULL;
      EXCEPTION WHEN OTHERS THEN RAISE WARNING 'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;
      END;
    END IF;
  END LOOP;
  PERFORM set_config('cached_fields.rewritten', '', true);
END;
$cf$;
DROP EVENT TRIGGER IF EXISTS "cf_ddl_lampposts_pigeons_streets_28d05c9313";
CREATE EVENT TRIGGER "cf_ddl_lampposts_pigeons_streets_28d05c9313" ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION "cf_ddl_lampposts_pigeons_streets_28d05c9313"();
ALTER EVENT TRIGGER "cf_ddl_lampposts_pigeons_streets_28d05c9313" ENABLE ALWAYS;
COMMENT ON EVENT TRIGGER "cf_ddl_lampposts_pigeons_streets_28d05c9313" IS 'cached-fields';
