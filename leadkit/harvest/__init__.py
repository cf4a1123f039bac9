"""Post harvesting: the Apify client (`apify`), item mapping and merge (`posts`), and the harvester
(`harvester`). Nothing is imported here, so `import leadkit.harvest.posts` stays cheap."""
