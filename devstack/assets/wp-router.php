<?php
/*
 * Router for `php -S` serving contentline's local WordPress (devstack/wordpress.py).
 *
 * The document root is a per-instance directory of symlinks into Debian's /usr/share/wordpress plus this
 * instance's own wp-config.php and wp-content. ABSPATH is pinned to that directory before any WordPress file
 * runs: PHP resolves symlinks in __DIR__, so wp-admin's `dirname(__DIR__) . '/wp-load.php'` would otherwise
 * load Debian's wp-config.php (which looks for /etc/wordpress/config-<host>.php, shared by every instance).
 */
$root = rtrim($_SERVER['DOCUMENT_ROOT'], '/');
define('ABSPATH', $root . '/');

$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');
if (strpos($path, '..') !== false) {
    http_response_code(400);
    exit;
}
if ($path !== '/' && is_file($root . $path)) {
    if (substr($path, -4) !== '.php') {
        return false; // a static file (uploads, theme assets): the built-in server sends it as it is
    }
    $script = $root . $path;
} elseif (is_file($root . rtrim($path, '/') . '/index.php')) {
    $script = $root . rtrim($path, '/') . '/index.php'; // e.g. /wp-admin/
} else {
    $script = $root . '/index.php'; // pretty permalinks and /wp-json/ go through WordPress's front controller
}
$_SERVER['SCRIPT_FILENAME'] = $script;
$_SERVER['SCRIPT_NAME'] = $_SERVER['PHP_SELF'] = substr($script, strlen($root));
chdir(dirname($script));
require $script;
