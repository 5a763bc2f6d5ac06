# PageLab in a container: docker build -t pagelab . && docker run -p 8000:8000 pagelab
FROM python:3.11-slim
WORKDIR /srv/pagelab
COPY pyproject.toml README.md ./
COPY app ./app
COPY bench ./bench
COPY docs/*.md ./docs/
RUN pip install --no-cache-dir .
ENV PAGELAB_DEFAULT_PRESET=teaching-1g
EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
