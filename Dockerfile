# One image for every role: web, worker and the one-shot migration (see docker-compose.yml).
# The dashboard's front-end libraries come from npm in a build stage of their own.
FROM node:20-slim AS assets
WORKDIR /app
COPY csms/dashboard/package.json csms/dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts && npm run vendor

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY csms ./csms
COPY --from=assets /app/static/vendor ./csms/dashboard/static/vendor
COPY actors ./actors
COPY migrations ./migrations
COPY wsgi.py .flaskenv ./
RUN pip install --no-cache-dir -e . && useradd --create-home csms && chown -R csms /app
USER csms
EXPOSE 8080
CMD ["python", "wsgi.py"]
