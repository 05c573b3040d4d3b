FROM python:3.11-slim

WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY api ./api
COPY streams ./streams
COPY consumers ./consumers
COPY sql ./sql
COPY batchline ./batchline
COPY entities ./entities
RUN pip install --no-cache-dir .

# One image, three roles: `batchline api`, `batchline worker`, `batchline migrate`.
ENTRYPOINT ["batchline"]
CMD ["api"]
