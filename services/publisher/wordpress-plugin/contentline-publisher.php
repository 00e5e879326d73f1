<?php
/*
 * Plugin Name: contentline publisher support
 * Description: Lets contentline find the posts and images it created, so a retried publish never makes a duplicate, and exposes the SEO fields of Yoast SEO / Rank Math to it.
 * Version: 1.0
 *
 * Install as a must-use plugin: copy this file to wp-content/mu-plugins/ (create the folder if needed).
 * Without it contentline still publishes, but finds its earlier posts by slug only (see the README).
 */

// The marker: "draft:<site>:<draft id>" on posts, "image:<site>:<image id>" on media. Written in the same
// request that creates the post or the attachment, so it is there even if contentline crashes right after.
add_action('init', function () {
    $can_edit = function () {
        return current_user_can('edit_posts');
    };
    foreach (['post', 'attachment'] as $type) {
        register_post_meta($type, 'contentline_key', [
            'type' => 'string',
            'single' => true,
            'show_in_rest' => true,
            'auth_callback' => $can_edit,
        ]);
    }
    // SEO plugins keep their fields out of the REST API; expose title and description when one is active.
    $seo = [];
    if (defined('WPSEO_VERSION')) {
        $seo = ['_yoast_wpseo_title', '_yoast_wpseo_metadesc'];
    } elseif (class_exists('RankMath')) {
        $seo = ['rank_math_title', 'rank_math_description'];
    }
    foreach ($seo as $key) {
        register_post_meta('post', $key, [
            'type' => 'string',
            'single' => true,
            'show_in_rest' => true,
            'auth_callback' => $can_edit,
        ]);
    }
});

// GET /wp/v2/posts?contentline_key=... and /wp/v2/media?contentline_key=... (editors only).
foreach (['post', 'attachment'] as $contentline_type) {
    add_filter("rest_{$contentline_type}_query", function ($args, $request) {
        $key = $request->get_param('contentline_key');
        if (is_string($key) && $key !== '' && current_user_can('edit_posts')) {
            $args['meta_query'] = [['key' => 'contentline_key', 'value' => $key]];
        }
        return $args;
    }, 10, 2);
}
