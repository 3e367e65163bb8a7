-- Tokens and cost per user per day (UTC): each finished interactive request (the orchestrator's
-- records, on Cloud Run) and batch line (the worker's, on GKE). Per-token list prices, in USD per
-- million tokens, for the models billed per token; a self-hosted model is paid by the GPU-hour
-- (`main.py cost`) and counts 0 here.
WITH prices AS (
  SELECT 'google/gemini-3.5-flash-lite' AS model, 0.30 AS usd_per_m_prompt, 2.50 AS usd_per_m_completion
),
records AS (
  SELECT timestamp, jsonPayload.user_id AS user_id, jsonPayload.model AS model,
         jsonPayload.prompt_tokens AS prompt_tokens, jsonPayload.completion_tokens AS completion_tokens
  FROM run_googleapis_com_stdout
  WHERE jsonPayload.usage_record = 'request'
  UNION ALL
  SELECT timestamp, jsonPayload.user_id, jsonPayload.model,
         jsonPayload.prompt_tokens, jsonPayload.completion_tokens
  FROM stdout
  WHERE jsonPayload.usage_record = 'batch_line'
)
SELECT
  CAST(records.timestamp AS DATE) AS day,
  records.user_id,
  SUM(records.prompt_tokens) AS prompt_tokens,
  SUM(records.completion_tokens) AS completion_tokens,
  SUM(records.prompt_tokens * COALESCE(prices.usd_per_m_prompt, 0)
      + records.completion_tokens * COALESCE(prices.usd_per_m_completion, 0)) / 1000000 AS cost_usd
FROM records
LEFT JOIN prices ON prices.model = records.model
GROUP BY 1, 2
ORDER BY 1, 2
