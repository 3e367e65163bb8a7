"""The platform through the official openai client: a chat, a stream, a file and a batch.
Run it after the export lines `make run-local` prints (OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_MODEL)."""

import io
import json
import os
import time

import openai

client = openai.OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
model = os.environ["OPENAI_MODEL"]
messages = [{"role": "user", "content": "Say hello in five words."}]

reply = client.chat.completions.create(model=model, messages=messages)
print("chat:", reply.choices[0].message.content)

stream = client.chat.completions.create(model=model, messages=messages, stream=True)
print("stream:", "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))

lines = [
    {
        "custom_id": f"q{n}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": messages},
    }
    for n in range(3)
]
requests = io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())
batch_file = client.files.create(file=("requests.jsonl", requests), purpose="batch")
print("file:", batch_file.id, batch_file.bytes, "bytes")

batch = client.batches.create(input_file_id=batch_file.id, endpoint="/v1/chat/completions", completion_window="24h")
while batch.status not in ("completed", "failed", "expired", "cancelled"):
    time.sleep(1)
    batch = client.batches.retrieve(batch.id)
print("batch:", batch.id, batch.status, batch.request_counts)
if batch.output_file_id:
    for line in client.files.content(batch.output_file_id).text.splitlines():
        answer = json.loads(line)
        print(" ", answer["custom_id"], answer["response"]["body"]["choices"][0]["message"]["content"])
