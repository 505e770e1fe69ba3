//! One macro for the `Arc<T>` and `Box<T>` forwarding impls of every public trait, so
//! that `Arc<dyn Trait>` and `Box<dyn Trait>` are usable wherever a `Trait` is, and no
//! trait (or method) is left out of one of the two.

/// `forward_impls!(Trait { fn a(&self) -> X; } { async fn b(&self, x: &Y) -> Z => (x); })`:
/// every method of the trait, defaults included (a default left out would silently not
/// be forwarded), the plain ones in the first braces and the async ones in the second.
/// An async method's signature goes through as raw tokens, so that `async_trait` sees
/// the references in it and gives them the lifetimes it gave them in the trait; its
/// argument names follow `=>`. `self` comes from the caller's tokens too (a macro's own
/// `self` is not the method's). The methods are spelled out in the impl, not produced by
/// a nested macro call, because `async_trait` rewrites the impl before such a call
/// would expand.
macro_rules! forward_impls {
    ($trait:path {
        $(fn $f:ident(&$s:ident $(, $a:ident: $t:ty)*) -> $r:ty;)*
    } {
        $(async fn $g:ident(&$gs:ident $($sig:tt)*) -> $gr:ty => ($($b:ident),*);)*
    }) => {
        #[async_trait::async_trait]
        impl<T: $trait + ?Sized> $trait for std::sync::Arc<T> {
            $(fn $f(&$s $(, $a: $t)*) -> $r {
                (**$s).$f($($a),*)
            })*
            $(async fn $g(&$gs $($sig)*) -> $gr {
                (**$gs).$g($($b),*).await
            })*
        }
        #[async_trait::async_trait]
        impl<T: $trait + ?Sized> $trait for Box<T> {
            $(fn $f(&$s $(, $a: $t)*) -> $r {
                (**$s).$f($($a),*)
            })*
            $(async fn $g(&$gs $($sig)*) -> $gr {
                (**$gs).$g($($b),*).await
            })*
        }
    };
}

pub(crate) use forward_impls;
