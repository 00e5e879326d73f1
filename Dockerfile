# One image for every contentline process: the five services, the migrations, the fake AI provider.
# docker-compose.yml picks the process with `command:`; there is no default command here.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# 1. Dependencies alone, read from pyproject.toml: this (slow) layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. The packages, alembic.ini and shared/db/migrations (.dockerignore keeps out .venv, .git, caches, state).
#    The processes run from /app (`python -m ...` puts the working directory first on sys.path), so
#    shared.db.migrate finds /app/alembic.ini and the migrations next to the code it runs.
COPY . .
RUN pip install . \
    && rm -rf build ./*.egg-info \
    && test -f alembic.ini && test -d shared/db/migrations/versions

# 3. Unprivileged user; it owns the media directory so the named volume mounted there is writable
#    (an empty named volume takes the owner of the image directory it is mounted over).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /app contentline \
    && mkdir -p /data/media \
    && chown -R contentline:contentline /data
USER contentline
