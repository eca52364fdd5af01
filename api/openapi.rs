pub struct OpenApi;
impl OpenApi { pub fn build() -> OpenApi { OpenApi } pub fn v3_root(&self) -> &[u8] { b"" } pub fn v3_root_etag(&self) -> &str { "" } pub fn v3_document(&self, _g: &str) -> Option<(&[u8], &str)> { None } pub fn v2(&self) -> Option<&[u8]> { None } }
