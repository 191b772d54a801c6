-- `stage` always equalled `status`, and `message` followed from it: both are derived now.
-- `image_from` marks a deployment that starts an earlier deployment's image (a redeploy):
-- it runs pending -> deploying -> success, with no clone and no build.
ALTER TABLE deployments DROP COLUMN stage;
ALTER TABLE deployments DROP COLUMN message;
ALTER TABLE deployments ADD COLUMN image_from INTEGER;
-- A redeploy queued before this migration still starts its image rather than building.
UPDATE deployments SET image_from = id WHERE status = 'pending' AND image IS NOT NULL;
