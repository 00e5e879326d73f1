"""Publishing: approved drafts → posts on the site's WordPress (images, terms, SEO fields), and a status sync."""
