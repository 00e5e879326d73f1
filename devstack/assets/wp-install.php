<?php
/*
 * Installs contentline's local WordPress non-interactively (devstack/wordpress.py runs it with the PHP CLI,
 * with the same environment as the server) and prints, as JSON, the application passwords it created:
 * one for the administrator and one for a subscriber (a user who may not publish, for the tests).
 */
define('ABSPATH', rtrim(getenv('CONTENTLINE_WP_ROOT'), '/') . '/');
define('WP_INSTALLING', true);
$contentline_url = parse_url(getenv('CONTENTLINE_WP_URL'));
$_SERVER['HTTP_HOST'] = $contentline_url['host'] . ':' . $contentline_url['port'];
$_SERVER['SERVER_NAME'] = $contentline_url['host'];
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';

// Pluggable: no "your new site" e-mail (there is no MTA).
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password)
{
}

require ABSPATH . 'wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

$admin = getenv('CONTENTLINE_WP_ADMIN_USER');
if (!is_blog_installed()) {
    $installed = wp_install('contentline local WordPress', $admin, "$admin@example.com", false, '',
        wp_slash(getenv('CONTENTLINE_WP_ADMIN_PASSWORD')));
    if (is_wp_error($installed)) {
        fwrite(STDERR, $installed->get_error_message() . "\n");
        exit(1);
    }
}
// Pretty permalinks: /wp-json/ and /<slug>/ (the router sends every unknown path to index.php).
global $wp_rewrite;
$wp_rewrite->set_permalink_structure('/%postname%/');
flush_rewrite_rules(false);
if (wp_get_theme('twentytwentythree')->exists()) {
    switch_theme('twentytwentythree');
}

function contentline_app_password(int $user_id): string
{
    [$password] = WP_Application_Passwords::create_new_application_password($user_id, ['name' => 'contentline']);
    return $password;
}

$subscriber = get_user_by('login', 'subscriber');
$subscriber_id = $subscriber ? $subscriber->ID : wp_insert_user([
    'user_login' => 'subscriber',
    'user_pass' => wp_generate_password(24),
    'user_email' => 'subscriber@example.com',
    'role' => 'subscriber',
]);
if (is_wp_error($subscriber_id)) {
    fwrite(STDERR, $subscriber_id->get_error_message() . "\n");
    exit(1);
}
echo json_encode([
    'admin_app_password' => contentline_app_password(get_user_by('login', $admin)->ID),
    'subscriber_app_password' => contentline_app_password($subscriber_id),
    'version' => get_bloginfo('version'),
]), "\n";
