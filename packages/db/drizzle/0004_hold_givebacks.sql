CREATE TABLE "hold_givebacks" (
	"giveback_id" text PRIMARY KEY NOT NULL,
	"hold_id" text NOT NULL,
	"amount_micros" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "hold_givebacks_created_idx" ON "hold_givebacks" USING btree ("created_at");