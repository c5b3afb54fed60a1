ALTER TABLE "accounts" ADD COLUMN "rpm_limit" integer;--> statement-breakpoint
ALTER TABLE "accounts" ADD COLUMN "tpm_limit" integer;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "rpm_limit" integer;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "tpm_limit" integer;--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "patience_ms" integer;
