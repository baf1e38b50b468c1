from django.contrib import admin

admin.site.site_header = "Runtime connection platform"
admin.site.site_title = "Runtime connection platform"
admin.site.index_title = "Administration"
