-- p95 time to first token (ms) per model, over the interactive requests whose answer began
-- (a request that failed before its first byte has no ttft_ms).
SELECT
  jsonPayload.model AS model,
  COUNT(*) AS requests,
  APPROX_QUANTILES(jsonPayload.ttft_ms, 100)[OFFSET(95)] AS p95_ttft_ms
FROM run_googleapis_com_stdout
WHERE jsonPayload.usage_record = 'request' AND jsonPayload.ttft_ms IS NOT NULL
GROUP BY 1
ORDER BY 1
