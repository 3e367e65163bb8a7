-- Batch lines per state, per batch: each line the worker finished, succeeded or failed.
SELECT
  jsonPayload.batch_id AS batch_id,
  jsonPayload.status AS state,
  COUNT(*) AS lines
FROM stdout
WHERE jsonPayload.usage_record = 'batch_line'
GROUP BY 1, 2
ORDER BY 1, 2
