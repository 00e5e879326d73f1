<?php
/*
 * wp-config.php of contentline's local WordPress (devstack/wordpress.py). Every value comes from the
 * environment of the PHP process, so one file serves every instance; nothing in /etc/wordpress is used.
 */
function contentline_env(string $name): string
{
    $value = getenv($name);
    if ($value === false || $value === '') {
        throw new RuntimeException("$name is not set (devstack/wordpress.py sets it)");
    }
    return $value;
}

define('DB_NAME', contentline_env('CONTENTLINE_WP_DB_NAME'));
define('DB_USER', contentline_env('CONTENTLINE_WP_DB_USER'));
define('DB_PASSWORD', contentline_env('CONTENTLINE_WP_DB_PASSWORD'));
define('DB_HOST', contentline_env('CONTENTLINE_WP_DB_HOST'));
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
$table_prefix = 'wp_';

$contentline_salt = contentline_env('CONTENTLINE_WP_SALT');
foreach (['AUTH', 'SECURE_AUTH', 'LOGGED_IN', 'NONCE'] as $contentline_kind) {
    define($contentline_kind . '_KEY', hash('sha256', "$contentline_salt key $contentline_kind"));
    define($contentline_kind . '_SALT', hash('sha256', "$contentline_salt salt $contentline_kind"));
}

define('WP_HOME', contentline_env('CONTENTLINE_WP_URL'));
define('WP_SITEURL', WP_HOME);
// "local" lets application passwords work over plain HTTP (WordPress otherwise insists on TLS).
define('WP_ENVIRONMENT_TYPE', 'local');
// No internet here, and no loopback requests that would tie up a worker of the built-in server.
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_AUTO_UPDATE_CORE', false);
define('FS_METHOD', 'direct');
define('WP_DEBUG', false);

if (!defined('ABSPATH')) {
    define('ABSPATH', __DIR__ . '/');
}
require_once ABSPATH . 'wp-settings.php';
