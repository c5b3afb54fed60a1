ALTER TABLE "batches" ADD COLUMN "output_expires_after" integer;--> statement-breakpoint
ALTER TABLE "files" ADD COLUMN "expires_at" bigint;--> statement-breakpoint
CREATE INDEX "files_expires_at_idx" ON "files" USING btree ("expires_at") WHERE expires_at IS NOT NULL;