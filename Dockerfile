# One image for every role: web, worker and the one-shot migration (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY csms ./csms
COPY actors ./actors
COPY migrations ./migrations
COPY wsgi.py .flaskenv ./
RUN pip install --no-cache-dir -e . && useradd --create-home csms && chown -R csms /app
USER csms
EXPOSE 8080
CMD ["python", "wsgi.py"]
